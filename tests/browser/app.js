// A stand-in for the Next.js frontend: calls todo-api cross-origin the way the real one does
// (fetch, a bearer token, credentials: "include") and writes every step's result into
// #results as JSON for the test to read. When every step has run (or one threw),
// #results gets data-done="true".
"use strict";

const params = new URLSearchParams(window.location.search);
const api = params.get("api");
const user = params.get("user");
const token = params.get("token");
const tasksUrl = `${api}/api/${encodeURIComponent(user)}/tasks`;
const results = [];

// Headers a cross-origin script may read: the CORS-safelisted ones plus what the API exposes.
const READABLE = ["content-type", "etag", "location", "x-request-id"];

async function call(step, method, url, { body, headers = {}, auth = `Bearer ${token}` } = {}) {
  const init = {
    method,
    credentials: "include",
    headers: { Authorization: auth, ...headers },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const result = { step, method, url };
  results.push(result);
  try {
    const response = await fetch(url, init);
    result.status = response.status;
    result.headers = {};
    for (const name of READABLE) {
      result.headers[name] = response.headers.get(name);
    }
    const text = await response.text();
    result.body = text ? JSON.parse(text) : null;
  } catch (error) {
    result.error = { name: error.name, message: error.message };
    throw error;
  }
  return result;
}

async function run() {
  const created = await call("create", "POST", tasksUrl, {
    body: { title: "  Buy milk from the browser  ", priority: "high", tags: ["errands"] },
    headers: { "X-Request-ID": "browser-test-create-1" },
  });
  const taskUrl = `${tasksUrl}/${created.body.id}`;
  await call("list", "GET", tasksUrl);
  await call("toggle", "PATCH", `${taskUrl}/complete`);
  const current = await call("get", "GET", taskUrl);
  // The ETag from the create is stale after the toggle: the conditional delete must be refused.
  await call("delete_stale", "DELETE", taskUrl, { headers: { "If-Match": created.headers.etag } });
  await call("delete", "DELETE", taskUrl, { headers: { "If-Match": current.headers.etag } });
  await call("list_after", "GET", tasksUrl);
  // Errors must be readable cross-origin too (CORS headers on every response).
  await call("invalid", "POST", tasksUrl, { body: { title: "   " } });
  await call("bad_token", "GET", tasksUrl, { auth: "Bearer not-a-jwt" });
}

function publish() {
  const out = document.getElementById("results");
  out.textContent = JSON.stringify(results, null, 2);
  out.dataset.done = "true";
}

run().catch(() => {}).finally(publish);
