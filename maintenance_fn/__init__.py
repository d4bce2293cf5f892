"""The maintenance sweep (a timer, MAINTENANCE_SCHEDULE): expired operations deleted, abandoned ones finished."""

import azure.functions as func

from shared.runtime import maintenance

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("MaintenanceSweep")
@bp.timer_trigger(arg_name="timer", schedule="%MAINTENANCE_SCHEDULE%")
def maintenance_sweep(timer: func.TimerRequest) -> None:
    maintenance().sweep()
