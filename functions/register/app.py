"""POST /registry/register: a workspace announces itself and gets its token (seed: RegistryHandler.Register)."""

from aws_lambda_powertools.logging import correlation_paths

from registry import api, service
from registry.models import RegisterPayload
from registry.observability import logger, metrics, tracer

app = api.resolver()


@app.post("/registry/register")
def register():
    event = app.current_event.raw_event
    payload = api.parse(RegisterPayload, event)
    return service.register(payload, api.Credentials.from_event(event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    return app.resolve(event, context)
