"""Queue input: request messages (both operations) from automation and from the HTTP calls answered 202,
and the waiting queues where requests wait for a spent budget, one per Defender API.

The message format is in shared/asynchronous/messages.py and the README; the worker paces them within the
shared budget and records each one's answer as an operation. Each waiting queue is its own function,
so the host runs (and scales) them apart: requests waiting on one API's budget never take the places
of requests for another.
"""

import azure.functions as func

from shared.asynchronous.queue_names import waiting_suffix
from shared.defender.facts import Api
from shared.runtime import worker

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def _handle(message: func.QueueMessage, context: func.Context, *, waiting: bool) -> None:
    """Every queue function's body: the message's text to the worker, with the host's trace of this invocation.
    Bytes that are not UTF-8 are replaced: the worker judges every message, and no decoding error makes the host
    retry one."""
    worker().handle(message.get_body().decode("utf-8", "replace"), waiting=waiting,
                    invocation=context.trace_context.trace_parent)


@bp.function_name("ProcessRequestMessage")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%", connection="AzureWebJobsStorage")
def process_request_message(message: func.QueueMessage, context: func.Context) -> None:
    _handle(message, context, waiting=False)


@bp.function_name("WaitCreateAlert")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%" + waiting_suffix(Api.CREATE_ALERT),
                  connection="AzureWebJobsStorage")
def wait_create_alert(message: func.QueueMessage, context: func.Context) -> None:
    _handle(message, context, waiting=True)


@bp.function_name("WaitFileAlerts")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%" + waiting_suffix(Api.FILE_ALERTS),
                  connection="AzureWebJobsStorage")
def wait_file_alerts(message: func.QueueMessage, context: func.Context) -> None:
    _handle(message, context, waiting=True)


@bp.function_name("WaitFileInfo")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%" + waiting_suffix(Api.FILE_INFO),
                  connection="AzureWebJobsStorage")
def wait_file_info(message: func.QueueMessage, context: func.Context) -> None:
    _handle(message, context, waiting=True)


@bp.function_name("WaitHunting")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%" + waiting_suffix(Api.HUNTING),
                  connection="AzureWebJobsStorage")
def wait_hunting(message: func.QueueMessage, context: func.Context) -> None:
    _handle(message, context, waiting=True)
