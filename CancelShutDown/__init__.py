"""HTTP: the link from the mail. GET/HEAD show the choices; POST records one (stop it later, or keep it tonight)."""

import logging

import azure.functions as func

from shared import app, pages
from shared.cancellation import CancelRequest, form_delay
from shared.domain import ClientInfo
from shared.errors import AutoShutdownError


def main(req: func.HttpRequest) -> func.HttpResponse:
    client = ClientInfo.from_headers(req.headers.get("X-Forwarded-For"), req.headers.get("User-Agent"))
    delay = form_delay(req.headers.get("Content-Type"), req.get_body())
    try:
        page = pages.for_result(
            app.run_cancel_shutdown(CancelRequest(req.method, req.params.get("token"), client, delay))
        )
    except AutoShutdownError as error:
        page = pages.for_error(error)
    except Exception:
        logging.exception("CancelShutDown failed unexpectedly")
        page = pages.for_bug()
    body = "" if req.method.upper() == "HEAD" else page.body
    return func.HttpResponse(body, status_code=page.status, headers=page.headers, mimetype="text/html")
