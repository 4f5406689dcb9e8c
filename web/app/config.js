// Where the backend is. On the local stack every default is right; for a deployed
// stage set SITE (or pass ?api=…&ws=…&signin=token once: it is remembered).
//   apiBaseUrl: the REST API, e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod
//   wsUrl:      the WebSocket API, e.g. wss://xyz.execute-api.eu-west-1.amazonaws.com/prod
//   signIn:     "dev" (the local identity provider's POST /dev/token) or "token" (paste a JWT)
//   rawMic:     true turns off echo cancellation, noise suppression and auto gain (music; the
//               browser tests' steady tones, which noise suppression would fade out): ?rawmic=1
export const SITE = {};

const KEY = "sohbet.config";

export function defaults(loc) {
  const ws = loc.protocol === "https:" ? "wss:" : "ws:";
  return { apiBaseUrl: loc.origin, wsUrl: `${ws}//${loc.host}/`, signIn: "dev", rawMic: false };
}

export function loadConfig(loc = window.location, storage = window.localStorage) {
  let saved = {};
  try {
    saved = JSON.parse(storage.getItem(KEY) || "{}");
  } catch {
    saved = {};
  }
  const params = new URLSearchParams(loc.search);
  const fromUrl = {};
  if (params.get("api")) fromUrl.apiBaseUrl = params.get("api");
  if (params.get("ws")) fromUrl.wsUrl = params.get("ws");
  if (params.get("signin")) fromUrl.signIn = params.get("signin") === "token" ? "token" : "dev";
  if (params.has("rawmic")) fromUrl.rawMic = params.get("rawmic") !== "0";
  if (Object.keys(fromUrl).length) storage.setItem(KEY, JSON.stringify({ ...saved, ...fromUrl }));
  const config = { ...defaults(loc), ...SITE, ...saved, ...fromUrl };
  config.apiBaseUrl = config.apiBaseUrl.replace(/\/+$/, "");
  return config;
}
