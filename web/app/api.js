// REST calls (docs/openapi.yaml). Every failure becomes an ApiError with the
// server's stable `code` and its `message`.

export class ApiError extends Error {
  constructor(code, message, status = 0, data = null) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    this.status = status;
    this.data = data; // the error's `data`, e.g. a conflict's case as it now is
  }
}

export class Api {
  constructor(baseUrl, token = null) {
    this.baseUrl = baseUrl;
    this.token = token;
  }

  async call(method, path, body, extraHeaders = {}) {
    const headers = { Accept: "application/json", ...extraHeaders };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError("network", `cannot reach ${this.baseUrl} (${error.message})`);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) {
      const code = (data && data.code) || `http_${response.status}`;
      const message = (data && (data.message || data.Message)) || response.statusText || "request failed";
      throw new ApiError(code, message, response.status, (data && data.data) || null);
    }
    return data;
  }

  devToken(user, groups = []) {
    return this.call("POST", "/dev/token", groups.length ? { user, groups } : { user });
  }
  wsTicket() {
    return this.call("POST", "/ws/ticket");
  }
  whoami() {
    return this.call("GET", "/whoami");
  }
  createSpace(body) {
    return this.call("POST", "/spaces", body);
  }
  listSpaces(state) {
    return this.call("GET", `/spaces?state=${encodeURIComponent(state)}`);
  }
  searchSpaces(query, state) {
    const q = new URLSearchParams({ query, state });
    return this.call("GET", `/spaces/search?${q}`);
  }
  spacesByCreator(userId) {
    return this.call("GET", `/spaces/by/creator/${encodeURIComponent(userId)}`);
  }
  startSpace(spaceId) {
    return this.call("POST", `/spaces/${encodeURIComponent(spaceId)}/start`);
  }
  cancelSpace(spaceId) {
    return this.call("POST", `/spaces/${encodeURIComponent(spaceId)}/cancel`);
  }
  setReminder(spaceId) {
    return this.call("PUT", `/spaces/${encodeURIComponent(spaceId)}/reminder`);
  }
  clearReminder(spaceId) {
    return this.call("DELETE", `/spaces/${encodeURIComponent(spaceId)}/reminder`);
  }
  myReminders() {
    return this.call("GET", "/me/reminders?limit=50");
  }
  notifications() {
    return this.call("GET", "/me/notifications?limit=20");
  }
  markAllRead() {
    return this.call("POST", "/me/notifications/read", { all: true });
  }
  block(userId) {
    return this.call("PUT", `/me/blocks/${encodeURIComponent(userId)}`);
  }
  unblock(userId) {
    return this.call("DELETE", `/me/blocks/${encodeURIComponent(userId)}`);
  }
}
