// A real Better Auth instance with its JWT plugin, served over HTTP for tests/test_better_auth.py.
//
// It is what a Next.js frontend runs: email + password sign-up, `GET /api/auth/token` (the
// session's JWT) and `GET /api/auth/jwks` (the public keys), with Better Auth's own
// defaults for everything the test does not name. Users and keys live in memory (the
// package's memory adapter: no native module, nothing written to disk), so every process
// is a fresh instance with its own keys.
//
// Settings (environment):
//   PORT                   port on 127.0.0.1 (default 0: the system picks a free one)
//   BETTER_AUTH_SECRET     the instance secret (default: random per process)
//   JWT_ALG                EdDSA (the plugin's default), ES256, ES512, RS256 or PS256
//   JWT_ISSUER, JWT_AUDIENCE
//                          override the plugin's `iss`/`aud` (default: the base URL)
//
// When it is ready it prints one line of JSON to stdout:
//   {"ready": true, "baseURL": "http://127.0.0.1:PORT", "alg": "EdDSA"}
// It exits when its stdin closes, so it never outlives the test run that started it.

import { randomBytes } from "node:crypto";
import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { toNodeHandler } from "better-auth/node";
import { jwt } from "better-auth/plugins/jwt";

const ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"];

const alg = process.env.JWT_ALG || "EdDSA";
if (!ALGORITHMS.includes(alg)) {
  console.error(`JWT_ALG must be one of ${ALGORITHMS.join(", ")}, got ${JSON.stringify(alg)}`);
  process.exit(2);
}
const port = Number.parseInt(process.env.PORT || "0", 10);
const secret = process.env.BETTER_AUTH_SECRET || randomBytes(32).toString("base64url");

const server = createServer();

server.listen(port, "127.0.0.1", () => {
  const baseURL = `http://127.0.0.1:${server.address().port}`;
  const jwtOptions = {};
  if (process.env.JWT_ISSUER) jwtOptions.issuer = process.env.JWT_ISSUER;
  if (process.env.JWT_AUDIENCE) jwtOptions.audience = process.env.JWT_AUDIENCE;

  const auth = betterAuth({
    baseURL,
    secret,
    database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
    emailAndPassword: { enabled: true },
    telemetry: { enabled: false },
    plugins: [jwt({ jwks: { keyPairConfig: { alg } }, jwt: jwtOptions })],
  });

  server.on("request", toNodeHandler(auth));
  process.stdout.write(`${JSON.stringify({ ready: true, baseURL, alg })}\n`);
});

server.on("error", (error) => {
  console.error(`better-auth test server: ${error.message}`);
  process.exit(1);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
