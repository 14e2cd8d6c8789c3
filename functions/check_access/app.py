"""POST /registry/check-access: may one workspace talk to another, by the org hierarchy (seed: DiscoveryHandler.CheckAccess)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, discovery
from registry.models import CheckAccessPayload
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.post("/registry/check-access")
def check_access():
    event = app.current_event.raw_event
    payload = api.parse(CheckAccessPayload, event)
    return discovery.check_access(payload, api.Credentials.from_event(event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
