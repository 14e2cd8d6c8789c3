"""Scheduled every minute: expire silent workspaces (with self-preservation)
and relay recorded events that were not published. See registry.sweep."""

from registry import sweep
from registry.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event, context):
    # A failure raises: the scheduler's retry policy and dead-letter queue
    # and the sweep-failure alarm see it. Nothing is half-done: the expiry
    # is one transaction and the relay marks only what EventBridge took.
    result = sweep.run()
    relay = result.relay
    return {
        "skipped": result.skipped,
        "fleet": result.fleet,
        "silent": result.silent,
        "expired": len(result.expired),
        "self_preservation": result.self_preservation,
        "flushed": result.flushed,
        "drains": result.drains,
        "relayed": relay.published if relay else 0,
        "pending_events": relay.pending if relay else 0,
    }
