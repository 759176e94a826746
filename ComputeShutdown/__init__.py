"""Timer: stop every targeted running compute instance nobody asked to keep tonight."""

import logging

import azure.functions as func

from shared import app


def main(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.warning("ComputeShutdown is running late (past due); stopping now")
    # A RunFailedError propagates on purpose: the run is marked failed for monitoring.
    app.run_compute_shutdown()
