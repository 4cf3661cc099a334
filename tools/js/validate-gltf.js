#!/usr/bin/env node
// Validate one glTF/GLB file with the Khronos glTF-Validator and print its JSON report on stdout.
// Usage: node tools/js/validate-gltf.js FILE.glb
// Exit code: 0 when the report has no errors, 1 when it has errors, 2 on usage or I/O problems.
"use strict";
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const file = process.argv[2];
if (!file) {
  console.error("usage: validate-gltf.js FILE.glb|FILE.gltf");
  process.exit(2);
}
let bytes;
try {
  bytes = new Uint8Array(fs.readFileSync(file));
} catch (e) {
  console.error(`cannot read ${file}: ${e.message}`);
  process.exit(2);
}
validator
  .validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 100,
    externalResourceFunction: (uri) =>
      new Promise((resolve, reject) => {
        fs.readFile(path.join(path.dirname(file), decodeURIComponent(uri)), (err, data) =>
          err ? reject(err.toString()) : resolve(new Uint8Array(data))
        );
      }),
  })
  .then((report) => {
    console.log(JSON.stringify(report, null, 1));
    process.exit(report.issues.numErrors > 0 ? 1 : 0);
  })
  .catch((e) => {
    console.error(`validator failed on ${file}: ${e}`);
    process.exit(2);
  });
