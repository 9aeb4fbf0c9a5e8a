"""`flask token create`: a token the API accepts, for trying it by hand."""

from __future__ import annotations

import jwt

from tests.conftest import SECRET


def test_token_create_prints_a_token_the_api_accepts(runner, client):
    result = runner.invoke(args=["token", "create", "cli-user", "--ttl", "120"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "cli-user"
    assert claims["exp"] - claims["iat"] == 120
    response = client.get("/api/cli-user/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_token_create_carries_issuer_audience_and_profile(app, runner):
    app.config.update(JWT_ISSUER="http://localhost:3000", JWT_AUDIENCE="http://localhost:3000")
    result = runner.invoke(args=["token", "create", "u", "--email", "u@example.com", "--name", "U"])
    claims = jwt.decode(
        result.output.strip(), SECRET, algorithms=["HS256"], audience="http://localhost:3000"
    )
    assert (claims["iss"], claims["aud"], claims["email"], claims["name"]) == (
        "http://localhost:3000", "http://localhost:3000", "u@example.com", "U"
    )


def test_token_create_without_secret_fails_clearly(app, runner):
    app.config["BETTER_AUTH_SECRET"] = ""
    result = runner.invoke(args=["token", "create", "u"])
    assert result.exit_code != 0
    assert "BETTER_AUTH_SECRET" in result.output


def test_token_create_rejects_an_overlong_user_id(runner):
    result = runner.invoke(args=["token", "create", "x" * 256])
    assert result.exit_code != 0
