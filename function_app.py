"""mde-alert-gateway: the Functions app. Registers one blueprint per function; the work is in shared/."""

import os

import azure.functions as func

from create_alert_fn import bp as create_alert_bp
from file_alerts_fn import bp as file_alerts_bp
from shared.runtime import check_configuration
from shared.settings import setting

# Refuse to start on a bad setting (a base URL off the allowlist, an unknown cloud, ...).
check_configuration()

# With Entra ID (App Service authentication) in front, the platform authenticates every caller;
# otherwise each call needs a function key.
_AUTH_LEVEL = func.AuthLevel.ANONYMOUS if setting(os.environ, "GATEWAY_AUTH") == "entra" else func.AuthLevel.FUNCTION

app = func.FunctionApp(http_auth_level=_AUTH_LEVEL)
app.register_functions(file_alerts_bp)
app.register_functions(create_alert_bp)
