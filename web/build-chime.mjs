// `make web`: bundle the pinned amazon-chime-sdk-js (CommonJS only) into one browser
// script, vendor/amazon-chime-sdk.min.js, that defines window.ChimeSDK. The SDK
// imports a few `node:*` built-ins it never uses in a browser: they become empty modules.
import { build } from "esbuild";

const emptyNodeBuiltins = {
  name: "empty-node-builtins",
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: "empty" }));
    b.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "module.exports = {};", loader: "js" }));
  },
};

const result = await build({
  stdin: { contents: 'module.exports = require("amazon-chime-sdk-js");', resolveDir: process.cwd() },
  bundle: true,
  minify: true,
  format: "iife",
  globalName: "ChimeSDK",
  platform: "browser",
  target: ["es2020"],
  outfile: "vendor/amazon-chime-sdk.min.js",
  plugins: [emptyNodeBuiltins],
  logLevel: "warning",
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`vendor/amazon-chime-sdk.min.js: ${(bytes / 1e6).toFixed(2)} MB`);
