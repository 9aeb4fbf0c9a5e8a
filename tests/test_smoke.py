from tests.conftest import bearer


def test_create_and_get(client):
    created = client.post("/api/user-a/tasks", json={"title": "x"}, headers=bearer())
    assert created.status_code == 201
    got = client.get(created.headers["Location"], headers=bearer())
    assert got.status_code == 200
    assert got.get_json() == created.get_json()
