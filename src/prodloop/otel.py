"""Send OpenTelemetry spans to a prodloop server in one call::

    import prodloop.otel
    prodloop.otel.configure("http://localhost:8000", api_key, service_name="support-assistant")

Needs the ``otel`` extra (``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http``).
"""

from __future__ import annotations

from typing import Any


def configure(
    base_url: str,
    api_key: str,
    service_name: str,
    *,
    release: str | None = None,
    resource_attributes: dict[str, Any] | None = None,
    set_global: bool = True,
    batch: bool = True,
) -> Any:
    """Create a ``TracerProvider`` that exports to ``BASE_URL/v1/traces`` with the key, and return it.

    ``service_name`` names the feature; ``release`` is stamped on every span as ``prodloop.release``.
    With ``set_global`` (default) it becomes the global provider, so existing OpenTelemetry
    instrumentation sends its spans to prodloop with no other change.
    """
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("prodloop.otel needs the OpenTelemetry SDK: pip install 'prodloop[otel]'") from exc

    class _ReleaseStamp(SpanProcessor):  # type: ignore[misc]
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            span.set_attribute("prodloop.release", release)

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, **(resource_attributes or {})})
    )
    if release is not None:
        provider.add_span_processor(_ReleaseStamp())
    exporter = OTLPSpanExporter(
        endpoint=base_url.rstrip("/") + "/v1/traces", headers={"Authorization": f"Bearer {api_key}"}
    )
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider
