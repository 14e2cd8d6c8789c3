"""GET /registry/{id}/peers: a workspace's siblings, children and parent, optionally filtered by ?q= (seed: DiscoveryHandler.Peers)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, discovery
from registry.observability import logger, metrics, tracer
from registry.settings import get_settings

app = api.resolver()


@app.get("/registry/<id>/peers")
def peers(id: str):  # noqa: A002 - the route's parameter name
    event = app.current_event.raw_event
    query = app.current_event.get_query_string_value("q")
    body = discovery.peers(id, query, api.Credentials.from_event(event))
    return api.conditional_json(event, body, max_age=get_settings().discovery_max_age_seconds, vary="Authorization")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
