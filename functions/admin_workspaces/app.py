"""GET /admin/workspaces: the fleet, a page at a time, filtered by status, search, skill, tag and changed-since (operators; IAM in AWS)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, fleet
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.get("/admin/workspaces")
def list_workspaces():
    event = app.current_event.raw_event
    fleet.require_operator(event, "GET /admin/workspaces")
    return fleet.workspaces(event)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
