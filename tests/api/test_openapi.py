"""OpenAPI documentation: every endpoint described, with an example query and typed answers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app


def test_every_operation_is_documented(settings):
    with TestClient(create_app(settings)) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    operations = [(path, op) for path, item in schema["paths"].items() for op in item.values()]
    assert len(operations) >= 20
    for path, op in operations:
        assert op.get("summary"), path
        assert "Example:" in op.get("description", ""), path
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        model = ok["items"] if ok.get("type") == "array" else ok
        assert "$ref" in model, path  # a typed response model, not a bare object
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query":
                assert parameter.get("description"), (path, parameter["name"])
    for path, op in operations:
        if path.startswith("/api/v1"):
            assert {"401", "403", "503"} <= set(op["responses"]), path
            headers = set(op["responses"]["200"].get("headers", {}))
            assert "X-Data-As-Of" in headers, path
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            if ok.get("type") == "array":  # a page: its total and next page in headers
                assert {"X-Total-Count", "Link"} <= headers, path
        if op.get("parameters"):
            assert "422" in op["responses"], path
    assert "/dashboard" not in schema["paths"]
