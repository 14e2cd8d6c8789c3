"""GET /admin/workspaces/{id}: one workspace's record, what Redis holds for it and its latest events (operators; IAM in AWS)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, fleet
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.get("/admin/workspaces/<id>")
def get_workspace(id: str):
    fleet.require_operator(app.current_event.raw_event, "GET /admin/workspaces/{id}")
    return fleet.workspace(id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
