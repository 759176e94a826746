"""What wraps every run: no secret leaves in an escaping exception, and two jobs of one run both run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from . import redaction

P = ParamSpec("P")
R = TypeVar("R")


def no_secret_escapes(run: Callable[P, R]) -> Callable[P, R]:
    """Whatever leaves a use case leaves it masked: the Functions worker reports an escaping exception
    (text, traceback, cause chain) itself, past the log-record factory."""

    @functools.wraps(run)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return run(*args, **kwargs)
        except Exception as error:
            masked = redaction.scrub(error)
            if masked is error:
                raise
        # Raised outside the except block, so not even a hidden __context__ leads back to the original.
        raise masked

    return guarded


def run_both(first: Callable[[], R], second: Callable[[], object]) -> R:
    """Run both; once both have run, re-raise the first's error (or the second's)."""
    errors: list[Exception] = []
    result = None
    try:
        result = first()
    except Exception as error:
        errors.append(error)
    try:
        second()
    except Exception as error:
        errors.append(error)
    if errors:
        raise errors[0]
    return result
