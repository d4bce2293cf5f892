"""mde-alert-gateway: the Functions app.

Reads its settings once and starts the gateway, then registers one blueprint per function. Bad settings, or any
other exception while starting, never stop the import (the host would index no function and answer 404
everywhere): every HTTP function then answers 503 gateway-misconfigured (naming the bad settings to a caller with a
key), and no queue or timer function is registered, so queued requests wait untouched until the cause is fixed. A
registered queue function could not leave them so: the host takes each message, and a function that fails moves
it to the poison queue after maxDequeueCount attempts; only a function the host never indexed leaves the queue alone.
"""

import azure.functions as func

from create_alert_fn import bp as create_alert_bp
from file_alerts_fn import bp as file_alerts_bp
from health_fn import bp as health_bp
from hunting_fn import bp as hunting_bp
from maintenance_fn import bp as maintenance_bp
from openapi_fn import bp as openapi_bp
from operations_fn import bp as operations_bp
from operator_fn import bp as operator_bp
from request_queue_fn import bp as request_queue_bp
from shared import runtime
from shared.http.settings import AuthMode
from shared.settings import requested_auth
from tenants_fn import bp as tenants_bp

gateway = runtime.start()

# With Entra ID (App Service authentication) in front, the platform authenticates every caller;
# otherwise each call needs a function key.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS if requested_auth() is AuthMode.ENTRA
                       else func.AuthLevel.FUNCTION)
for blueprint in (file_alerts_bp, create_alert_bp, hunting_bp, tenants_bp, operations_bp, health_bp, openapi_bp,
                  operator_bp):
    app.register_functions(blueprint)
if isinstance(gateway, runtime.Runtime):
    app.register_functions(request_queue_bp)
    app.register_functions(maintenance_bp)
