"""mde-alert-gateway: the Functions app.

Reads its settings once, starts the gateway, and registers one blueprint per function.
"""

import azure.functions as func

from create_alert_fn import bp as create_alert_bp
from file_alerts_fn import bp as file_alerts_bp
from health_fn import bp as health_bp
from openapi_fn import bp as openapi_bp
from operations_fn import bp as operations_bp
from request_queue_fn import bp as request_queue_bp
from shared import runtime
from shared.settings import AuthMode, load_settings

# Any bad setting (a base URL off the allowlist, an unknown cloud, unusable storage ...) stops start-up here.
settings = load_settings()
runtime.start(settings)

# With Entra ID (App Service authentication) in front, the platform authenticates every caller;
# otherwise each call needs a function key.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS if settings.auth is AuthMode.ENTRA
                       else func.AuthLevel.FUNCTION)
for blueprint in (file_alerts_bp, create_alert_bp, operations_bp, health_bp, request_queue_bp, openapi_bp):
    app.register_functions(blueprint)
