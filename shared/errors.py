"""Every error this app raises on purpose, in one tree.

    AutoShutdownError
    ├── ConfigurationError          App Settings missing or invalid; .problems lists every one
    │   └── ProjectWorkspaceError   an aml_workspaces entry names an AI Foundry project (found on
    │                               its first read; fails that workspace alone)
    ├── CancelRequestError          a click we cannot honour; shown as a 4xx page
    │   ├── InvalidLinkError        missing, malformed, tampered or foreign link      (400)
    │   ├── InvalidChoiceError      a `delay` the page does not offer (now)           (400)
    │   ├── MethodNotAllowedError   anything but GET, HEAD or POST                    (405)
    │   └── ExpiredLinkError        the shutdown it was for has already begun        (410)
    ├── ServiceError                AzureML, Table Storage or SendGrid failed; .service names it
    │   ├── TransientServiceError   worth retrying: throttled, 5xx, timeout, refused; .retry_after
    │   ├── CredentialsError        the service rejected our credentials; .setting names what to fix
    │   └── NotFoundError           the workspace or compute instance does not exist
    ├── OutOfTimeError              a call got no answer within the run's time budget
    ├── LostClaimError              another tick took this night over (our lease ran out mid-run)
    └── RunFailedError              a run finished, but some items failed (or a night was missed);
                                    .failures names each

Use cases raise these; entry points turn them into HTTP pages or failed timer runs. Adapters translate
SDK exceptions into ServiceError subclasses so that nothing above them imports an SDK.
"""

from __future__ import annotations

from collections.abc import Mapping


class AutoShutdownError(Exception):
    """Base of every error raised on purpose by this app."""


class ConfigurationError(AutoShutdownError):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{len(self.problems)} App Setting problem(s):\n{listing}")


class ProjectWorkspaceError(ConfigurationError):
    """An entry names an Azure AI Foundry project, whose compute instances are its hub's. Only a read of
    the workspace tells, so it fails that one workspace, in one line like its other failures."""

    def __init__(self, problem: str):
        self.problems = [problem]
        AutoShutdownError.__init__(self, problem)


class CancelRequestError(AutoShutdownError):
    """A click that cannot be honoured. Message and advice are shown to the person who clicked."""

    status = 400
    title = "This link cannot be used"

    def __init__(self, message: str, advice: str):
        self.advice = advice
        super().__init__(message)


class InvalidLinkError(CancelRequestError):
    status = 400
    title = "This link is not valid"


class InvalidChoiceError(CancelRequestError):
    status = 400
    title = "This choice is not available"


class MethodNotAllowedError(CancelRequestError):
    status = 405
    title = "This kind of request is not supported"


class ExpiredLinkError(CancelRequestError):
    status = 410
    title = "This link has expired"


class ServiceError(AutoShutdownError):
    """A remote service failed. `service` is one of "AzureML", "Table Storage", "SendGrid"."""

    def __init__(self, service: str, message: str):
        self.service = service
        super().__init__(f"{service}: {message}")


class TransientServiceError(ServiceError):
    """Throttling, a 5xx, a timeout or a refused connection: the same call may succeed later."""

    def __init__(self, service: str, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(service, message)


class CredentialsError(ServiceError):
    """The service rejected our credentials. `settings` names the App Settings to check."""

    def __init__(self, service: str, message: str, settings: tuple[str, ...]):
        self.settings = settings
        super().__init__(service, f"{message} (check App Setting(s): {', '.join(settings)})")


class NotFoundError(ServiceError):
    """The workspace or a compute instance does not exist (or we may not see it)."""


class OutOfTimeError(AutoShutdownError):
    """A call got no answer (or no turn) within the run's time budget; it may still complete later."""


class LostClaimError(AutoShutdownError):
    """Our claim on a night's mail run or sweep was taken over by another tick after its lease ran out;
    what this tick did is not recorded, and the other tick redoes what is left."""


class RunFailedError(AutoShutdownError):
    """A timer run did all it could, but some items failed. The run must end in failure."""

    def __init__(self, what: str, failures: Mapping[str, str]):
        self.failures = dict(failures)
        listing = "; ".join(f"{name}: {reason}" for name, reason in self.failures.items())
        super().__init__(f"{what} failed for {len(self.failures)} item(s): {listing}")


def traceback_if_bug(error: BaseException) -> BaseException | None:
    """For `exc_info=`: a traceback only for bugs; an error of ours already says all there is to say."""
    return None if isinstance(error, AutoShutdownError) else error
