from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import auth


def test_smoke(live_server, admin_key, client):
    provider = TracerProvider(resource=Resource.create({"service.name": "support"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=live_server.url + "/v1/traces", headers={"Authorization": f"Bearer {admin_key}"})))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("handle") as root:
        root.set_attribute("prodloop.release", "v1")
        root.set_attribute("prodloop.join_key", "T-1")
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.usage.input_tokens", 10)
            span.set_attribute("gen_ai.input.messages", '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]')
            span.set_attribute("gen_ai.output.messages", '[{"role":"assistant","parts":[{"type":"text","content":"hello"}]}]')
    provider.shutdown()
    r = client.get("/api/v1/traces", headers=auth(admin_key))
    print(r.json())
    assert r.status_code == 200
    t = r.json()["traces"][0]
    assert t["input"] == "hi" and t["output"] == "hello" and t["feature"] == "support"
    r = client.post("/api/v1/signals", headers=auth(admin_key), json={"signals": [{"join_key": "T-1", "kind": "outcome", "name": "resolved", "value": False}, {"join_key": "T-2", "kind": "explicit", "name": "thumbs_down"}]})
    print(r.json())
    assert r.json()["joined"] == 1
    r = client.post("/api/v1/traces", headers=auth(admin_key), json={"traces": [{"feature": "support", "join_key": "T-2", "input": "a", "output": "b", "model": "m"}]})
    print(r.json())
    r = client.get(f"/api/v1/features/support/coverage", headers=auth(admin_key))
    print(r.json())
    assert r.json()["with_any"] == 2
    tid = t["trace_id"]
    print(client.get(f"/api/v1/traces/{tid}", headers=auth(admin_key)).json())
