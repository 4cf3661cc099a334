#!/usr/bin/env node
// Decode an SPZ file with Niantic's reference C++ library (nianticlabs/spz compiled to WASM, as
// packaged by @spz-loader/core) and print the Gaussians as JSON on stdout:
// {numPoints, shDegree, antialiased, positions, scales (log), rotations (x y z w), alphas (0..1),
//  colors (SH DC), sh} with no coordinate conversion. Usage: node tools/js/spz-decode.mjs FILE.spz
process.type = "renderer"; // the emscripten glue's Node branch needs a bundler; the WASM is embedded
const { loadSpz } = await import("@spz-loader/core");
const { readFileSync } = await import("fs");
const file = process.argv[2];
if (!file) {
  console.error("usage: spz-decode.mjs FILE.spz");
  process.exit(2);
}
const g = await loadSpz(new Uint8Array(readFileSync(file)), {
  colorScaleFactor: 1.0,
  unpackOptions: { coordinateSystem: "UNSPECIFIED" },
});
if (!g.numPoints) {
  console.error(`the SPZ library could not read ${file}`);
  process.exit(1);
}
// the loader applies exp / sigmoid / (c + 0.5); undo exp and the colour offset (alphas stay in 0..1:
// their logits can be infinite, which JSON cannot hold)
const out = { numPoints: g.numPoints, shDegree: g.shDegree, antialiased: g.antialiased };
out.positions = Array.from(g.positions);
out.scales = Array.from(g.scales, (s) => Math.log(s));
out.rotations = Array.from(g.rotations);
out.alphas = Array.from(g.alphas);
out.colors = Array.from(g.colors, (c) => c - 0.5);
out.sh = Array.from(g.sh);
process.stdout.write(JSON.stringify(out));
