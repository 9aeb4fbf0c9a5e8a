"""The OpenAPI document and the self-hosted Swagger UI."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_document_is_openapi_31_with_bearer_security(spec):
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert spec["security"] == [{"bearerAuth": []}]


def test_every_contract_operation_is_documented(spec):
    paths = spec["paths"]
    assert set(paths["/api/{user_id}/tasks"]) >= {"get", "post"}
    assert set(paths["/api/{user_id}/tasks/{task_id}"]) >= {"get", "put", "patch", "delete"}
    assert "patch" in paths["/api/{user_id}/tasks/{task_id}/complete"]
    assert "get" in paths["/api/{user_id}/tags"]
    assert paths["/api/{user_id}/tasks/stats"]["get"]["operationId"] == "taskStats"
    assert paths["/api/{user_id}/export"]["get"]["operationId"] == "exportAccount"


def test_stats_takes_the_listings_filters_and_today(spec):
    operation = spec["paths"]["/api/{user_id}/tasks/stats"]["get"]
    parameters = {p["name"] for p in operation["parameters"]}
    assert parameters == {"user_id", "search", "priority", "tags", "tag_mode", "due_from",
                          "due_to", "today"}
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "503"}
    counts = spec["components"]["schemas"]["TaskStats"]
    assert set(counts["required"]) == {"total", "pending", "completed", "overdue", "due_today",
                                       "by_priority"}


def test_export_documents_its_download(spec):
    ok = spec["paths"]["/api/{user_id}/export"]["get"]["responses"]["200"]
    assert ok["headers"]["Content-Disposition"]["required"] is True
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Export"}


def test_public_endpoints_need_no_security(spec):
    assert spec["paths"]["/health"]["get"]["security"] == []
    assert spec["paths"]["/health/ready"]["get"]["security"] == []


def test_errors_are_documented_as_problem_json_and_400_not_422(spec):
    responses = spec["components"]["responses"]
    for name in ("BAD_REQUEST", "UNAUTHORIZED", "NOT_FOUND", "SERVICE_UNAVAILABLE", "DEFAULT_ERROR"):
        content = responses[name]["content"]
        assert list(content) == ["application/problem+json"]
        assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    # Validation is 400; 422 is only the Idempotency-Key used for another request, on the
    # operations that take one (tests/test_idempotency.py).
    for path in spec["paths"].values():
        for operation in path.values():
            if isinstance(operation, dict) and "responses" in operation:
                takes_key = any(parameter.get("name") == "Idempotency-Key"
                                for parameter in operation.get("parameters", []))
                assert ("422" in operation["responses"]) is takes_key
    unprocessable = responses["UNPROCESSABLE_ENTITY"]["content"]["application/problem+json"]
    assert "Idempotency-Key" in unprocessable["example"]["detail"]
    create = spec["paths"]["/api/{user_id}/tasks"]["post"]["responses"]
    assert create["400"] == {"$ref": "#/components/responses/BAD_REQUEST"}
    assert set(create["201"]["headers"]) >= {"Location", "ETag"}


def test_listing_parameters_are_described(spec):
    parameters = {p["name"]: p for p in spec["paths"]["/api/{user_id}/tasks"]["get"]["parameters"]}
    assert {"search", "status", "priority", "tags", "tag_mode", "due_from", "due_to",
            "sort_by", "sort_direction", "limit", "offset"} <= set(parameters)
    assert parameters["limit"]["schema"]["maximum"] == 100
    assert parameters["sort_by"]["schema"]["enum"] == [
        "created_at", "updated_at", "title", "due_date", "priority"
    ]


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert not re.search(r"https?://", html), "docs must not load anything from a CDN"
    assert "<script>" not in html, "no inline script (the CSP forbids it)"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.data) > 100, url
    assert 'data-spec-url="/openapi.json"' in html


def test_swagger_ui_bundle_is_version_5(client):
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert bundle.mimetype in ("text/javascript", "application/javascript")


def test_missing_asset_is_404_problem(client):
    response = client.get("/docs/assets/nope.js")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("headers", "status"), [
    ({"If-Match": '"not-this-file"'}, 412),
    ({"Range": "bytes=99999999-"}, 416),
])
@pytest.mark.parametrize("path", ["/docs/assets/swagger-ui.css", "/docs/swagger-initializer.js"])
def test_failed_conditions_on_docs_files_are_problems(client, path, headers, status):
    response = client.get(path, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_there_is_no_app_wide_static_route(client):
    response = client.get("/static/swagger-initializer.js")
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_path_parameters_come_first_in_every_operation(spec):
    """Swagger UI lists parameters in the document's order: the required `user_id` before
    the dozen optional query parameters."""
    for path, item in spec["paths"].items():
        expected = re.findall(r"\{(\w+)\}", path)
        assert "parameters" not in item, path  # none left at the path level
        for method, operation in item.items():
            names = [parameter["name"] for parameter in operation.get("parameters", [])]
            assert names[: len(expected)] == expected, (path, method, names)


def test_tags_brackets_is_documented_as_part_of_tags(spec):
    listing = spec["paths"]["/api/{user_id}/tasks"]["get"]
    names = [parameter["name"] for parameter in listing["parameters"]]
    assert "tags" in names and "tags[]" not in names
    tags = next(p for p in listing["parameters"] if p["name"] == "tags")
    assert "`tags[]`" in tags["description"]


def test_every_error_example_is_its_own_status(spec):
    """Without examples Swagger UI would invent one from the schema (a 401 saying 400)."""
    from http import HTTPStatus

    for name, response in spec["components"]["responses"].items():
        content = response.get("content", {}).get("application/problem+json")
        if content is None or name == "DEFAULT_ERROR":
            continue
        status = HTTPStatus[name]
        example = content["example"]
        assert (example["status"], example["title"]) == (status.value, status.phrase)
        assert ("errors" in example) == (status == 400)
