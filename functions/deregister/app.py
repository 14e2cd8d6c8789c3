"""POST /registry/deregister: a workspace shutting down cleanly goes offline now, not a TTL later."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, service
from registry.models import DeregisterPayload
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.post("/registry/deregister")
def deregister():
    event = app.current_event.raw_event
    payload = api.parse(DeregisterPayload, event)
    return service.deregister(payload, api.Credentials.from_event(event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
