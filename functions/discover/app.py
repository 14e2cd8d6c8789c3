"""GET /registry/discover/{id}: where a peer workspace can be reached, if the caller may reach it (seed: DiscoveryHandler.Discover)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, discovery
from registry.observability import logger, metrics, tracer
from registry.settings import get_settings

app = api.resolver()


@app.get("/registry/discover/<id>")
def discover(id: str):  # noqa: A002 - the route's parameter name
    event = app.current_event.raw_event
    body = discovery.discover(api.header(event, "X-Workspace-ID"), id, api.Credentials.from_event(event))
    return api.conditional_json(event, body, max_age=get_settings().discovery_max_age_seconds, vary="Authorization, X-Workspace-ID")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
