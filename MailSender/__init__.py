"""Timer: mail the people concerned a keep-it-running link for each instance tonight's sweep may stop."""

import logging

import azure.functions as func

from shared import app


def main(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.warning("MailSender is running late (past due); mailing now")
    # A RunFailedError propagates on purpose: the run is marked failed for monitoring.
    app.run_mail_sender()
