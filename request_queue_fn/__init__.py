"""Queue input: request messages (both operations) from automation and from the HTTP calls answered 202.

The message format is in shared/queue_messages.py and the README; the worker paces them within the
shared budget and records each one's answer as an operation.
"""

import azure.functions as func

from shared.runtime import worker

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("ProcessRequestMessage")
@bp.queue_trigger(arg_name="message", queue_name="%REQUESTS_QUEUE%", connection="AzureWebJobsStorage")
def process_request_message(message: func.QueueMessage) -> None:
    worker().handle(message.get_body().decode("utf-8", "replace"))
