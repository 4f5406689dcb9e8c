// The admin REST API (docs/openapi.yaml, /admin/*): the only thing the console talks to.
import { Api } from "../api.js";

const enc = encodeURIComponent;

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A fresh Idempotency-Key per submission: a retried request is applied once. */
export function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class AdminApi extends Api {
  cases(filters) {
    return this.call("GET", `/admin/cases${query({ sort: "priority", ...filters })}`);
  }
  caseDetail(caseId, { limit, cursor } = {}) {
    return this.call("GET", `/admin/cases/${enc(caseId)}${query({ limit, cursor })}`);
  }
  evidence(caseId) {
    return this.call("GET", `/admin/cases/${enc(caseId)}/evidence`);
  }
  act(caseId, body, key = idempotencyKey()) {
    return this.call("POST", `/admin/cases/${enc(caseId)}/actions`, body, { "Idempotency-Key": key });
  }
  audit(filters) {
    return this.call("GET", `/admin/audit${query(filters)}`);
  }
}
