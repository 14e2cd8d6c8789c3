"""GET /admin/events: the change feed from structure_events after a cursor, in an order a follower can resume without gaps (operators; IAM in AWS)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, fleet
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.get("/admin/events")
def list_events():
    event = app.current_event.raw_event
    fleet.require_operator(event, "GET /admin/events")
    return fleet.events(event)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
