// recon WebXR page: Spark renders the run's Gaussian splats inside a three.js scene.
//
// /run/scene.json (written by viewer/server.py) gives the splat file's URL and the transform from
// recon's world (OpenCV cameras, arbitrary up) to three.js's Y-up frame with the object centred.
// Desktop: OrbitControls. VR/AR: three.js VRButton/ARButton; grab-move locomotion (grip = move the
// scene, both grips = scale and turn), thumbsticks to walk and snap-turn.
//
// Dynamic runs: /run/sequence.json lists one splat file per frame time; the page plays them
// (play/pause, time scrubber, frames/s, loop; in VR the trigger plays and pauses).
//
// window.reconXR exposes state for tests and benchmarks (ready promise, timings, setView, time).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { VRButton } from "three/addons/webxr/VRButton.js";
import { ARButton } from "three/addons/webxr/ARButton.js";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

const params = new URLSearchParams(location.search);
const statusEl = document.getElementById("status");
const status = (s) => { statusEl.textContent = s; };
if (params.get("ui") === "0") document.body.classList.add("hide-ui");

const api = {
  ready: null, error: null, frames: 0, loadMs: null, firstPixelsMs: null, bytes: 0,
  numSplats: 0, meta: null, setView: null, renderOnce: null,
  // Dynamic runs: setTime(t), play(), pause(), sequenceState(); sequenceLoaded resolves when every frame is in.
  setTime: null, play: null, pause: null, sequenceState: null, sequenceLoaded: null,
};
window.reconXR = api;

function matFromRows(rows16) {
  // Row-major 16 numbers (as numpy's .ravel()) to a THREE.Matrix4.
  const m = new THREE.Matrix4();
  m.set(...rows16);
  return m;
}

const FLIP = new THREE.Matrix4().makeScale(1, -1, -1); // OpenCV camera axes <-> OpenGL camera axes

async function fetchBytes(url, onProgress) {
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get("Content-Length")) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const out = new Uint8Array(got);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

async function main() {
  const meta = await (await fetch("/run/scene.json", { credentials: "same-origin" })).json();
  api.meta = meta;
  const bg = new THREE.Color(params.get("bg") ? "#" + params.get("bg") : meta.background || "#000000");

  const renderer = new THREE.WebGLRenderer({ antialias: false, alpha: true });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
  renderer.setSize(window.innerWidth, window.innerHeight);
  renderer.xr.enabled = true;
  renderer.xr.setReferenceSpaceType("local-floor");
  document.body.appendChild(renderer.domElement);

  const scene = new THREE.Scene();
  scene.background = bg;
  const cam0 = meta.cameras[0];
  const camera = new THREE.PerspectiveCamera(cam0 ? cam0.fovy : 50, window.innerWidth / window.innerHeight,
    0.01 * meta.radius, 1000 * meta.radius);
  const rig = new THREE.Group(); // what locomotion moves; the XR camera and controllers live in it
  rig.add(camera);
  scene.add(rig);

  const spark = new SparkRenderer({ renderer });
  scene.add(spark);

  // world: user placement (position, yaw, uniform scale); splats: recon world -> Y-up scene frame.
  const world = new THREE.Group();
  scene.add(world);
  const sceneToXr = matFromRows(meta.scene_to_xr);

  // ---------------------------------------------------------------- splats: one model, or a sequence
  // A dynamic run (meta.sequence) is played from /run/sequence.json: one splat file per frame time
  // (the same Gaussians in every frame), each a SplatMesh of its own, only the current one visible.
  const t0 = performance.now();
  async function loadMesh(url, visible, onProgress) {
    const bytes = await fetchBytes(url, onProgress || (() => {}));
    api.bytes += bytes.length;
    const mesh = new SplatMesh({ fileBytes: bytes, fileName: url.split("/").pop() });
    mesh.matrixAutoUpdate = false;
    mesh.matrix.copy(sceneToXr);
    mesh.visible = visible;
    world.add(mesh);
    await mesh.initialized;
    return mesh;
  }
  const progress = (what) => (got, total) => {
    status(`loading ${what} ${(got / 1e6).toFixed(1)}${total ? " / " + (total / 1e6).toFixed(1) : ""} MB`);
  };
  status(`loading ${meta.splats.count.toLocaleString()} Gaussians…`);
  let seq = null;
  if (meta.sequence) {
    const res = await fetch(meta.sequence.url, { credentials: "same-origin" });
    if (!res.ok) throw new Error(`${meta.sequence.url}: HTTP ${res.status}`);
    const manifest = await res.json();
    const frames = manifest.frames;
    seq = {
      frames, times: frames.map((f) => f.time), meshes: frames.map(() => null), loaded: 0,
      time: frames[0].time, frame: -1, playing: false, fps: manifest.fps || 4, loop: true,
      encoding: manifest.encoding,
    };
    seq.meshes[0] = await loadMesh(frames[0].url, true, progress(`frame 1 of ${frames.length}`));
    seq.loaded = 1;
    seq.frame = 0;
    api.numSplats = seq.meshes[0].packedSplats ? seq.meshes[0].packedSplats.numSplats : meta.splats.count;
  } else {
    const splats = await loadMesh(meta.splats.url, true, progress("splats"));
    api.numSplats = splats.packedSplats ? splats.packedSplats.numSplats : meta.splats.count;
  }
  api.loadMs = performance.now() - t0;
  const loadedStatus = () => status(`${meta.splats.count.toLocaleString()} Gaussians · ` + (seq
    ? `${seq.loaded} of ${seq.frames.length} frames · ${seq.encoding.toUpperCase()} `
    : `${meta.splats.format.toUpperCase()} `) + `${(api.bytes / 1e6).toFixed(1)} MB`);
  loadedStatus();

  // ---------------------------------------------------------------- time (dynamic runs)
  const timeInput = document.getElementById("time");
  const timeValue = document.getElementById("time-value");
  const playButton = document.getElementById("play");
  const fpsInput = document.getElementById("fps");
  const loopInput = document.getElementById("loop");
  function nearestFrame(t, loadedOnly) {
    let best = -1, bestD = Infinity;
    seq.times.forEach((ft, k) => {
      const d = Math.abs(ft - t);
      if (d < bestD && (!loadedOnly || seq.meshes[k])) { best = k; bestD = d; }
    });
    return best;
  }
  function showTime() {
    // Show the loaded frame nearest the time (frames still loading: the nearest loaded one).
    const k = nearestFrame(seq.time, true);
    if (k !== seq.frame && k >= 0) {
      if (seq.frame >= 0) seq.meshes[seq.frame].visible = false;
      seq.meshes[k].visible = true;
      seq.frame = k;
    }
    timeValue.textContent = `time ${seq.time.toFixed(3)} · frame ${seq.frame + 1} of ${seq.frames.length}`;
  }
  function setTime(t) {
    const lo = seq.times[0], hi = seq.times[seq.times.length - 1];
    seq.time = Math.min(Math.max(Number(t), lo), hi);
    timeInput.value = seq.time;
    showTime();
  }
  function play() {
    if (seq.playing) return;
    if (!seq.loop && seq.time >= seq.times[seq.times.length - 1]) seq.time = seq.times[0];
    seq.playing = true;
    playButton.textContent = "pause";
  }
  function pause() {
    seq.playing = false;
    playButton.textContent = "play";
  }
  function advance(dt) {
    // Capture frames per second: the time moves (frame spacing x fps) per second.
    const n = seq.times.length, lo = seq.times[0], hi = seq.times[n - 1];
    const span = (hi - lo) / Math.max(n - 1, 1);
    let t = seq.time + dt * seq.fps * span;
    if (t > hi) {
      if (seq.loop && hi > lo) t = lo + ((t - lo) % (hi - lo));
      else { t = hi; pause(); }
    }
    setTime(t);
  }
  if (seq) {
    document.getElementById("time-controls").hidden = false;
    document.getElementById("help-time").hidden = false;
    timeInput.min = seq.times[0];
    timeInput.max = seq.times[seq.times.length - 1];
    fpsInput.value = seq.fps;
    timeInput.addEventListener("input", () => setTime(timeInput.value));
    playButton.addEventListener("click", () => (seq.playing ? pause() : play()));
    fpsInput.addEventListener("input", () => { const v = Number(fpsInput.value); if (v > 0) seq.fps = v; });
    loopInput.addEventListener("change", () => { seq.loop = loopInput.checked; });
    setTime(seq.time);
    api.setTime = setTime;
    api.play = play;
    api.pause = pause;
    api.sequenceState = () => ({ time: seq.time, frame: seq.frame, frameTime: seq.times[seq.frame],
      playing: seq.playing, loaded: seq.loaded, frames: seq.frames.length, fps: seq.fps, loop: seq.loop });
  }
  // The other frames load in the background, in order (each is encoded on first request).
  api.sequenceLoaded = !seq ? Promise.resolve(true) : (async () => {
    for (let k = 1; k < seq.frames.length; k++) {
      seq.meshes[k] = await loadMesh(seq.frames[k].url, false);
      seq.loaded += 1;
      loadedStatus();
    }
    return true;
  })().catch((e) => {
    api.error = String(e && e.stack ? e.stack : e);
    status(`error loading the sequence: ${e}`);
    return false;
  });

  // ---------------------------------------------------------------- desktop view
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.enableDamping = false;
  let fixedView = false;

  function setCameraFromCv(c2wRows, fovyDeg) {
    // c2w: recon world, OpenCV axes, row-major 16 numbers.
    const m = new THREE.Matrix4().multiplyMatrices(world.matrixWorld, sceneToXr)
      .multiply(matFromRows(c2wRows)).multiply(FLIP);
    m.decompose(camera.position, camera.quaternion, new THREE.Vector3());
    if (fovyDeg) { camera.fov = fovyDeg; camera.updateProjectionMatrix(); }
  }

  function resetView() {
    fixedView = false;
    world.position.set(0, 0, 0); world.quaternion.identity(); world.scale.setScalar(1);
    world.updateMatrixWorld(true);
    scaleInput.value = 0; showScale();
    if (cam0) {
      const m = matFromRows(cam0.c2w_xr);
      m.decompose(camera.position, camera.quaternion, new THREE.Vector3());
      camera.fov = cam0.fovy;
    } else {
      camera.position.set(0, 0.5 * meta.radius, 3 * meta.radius);
    }
    camera.updateProjectionMatrix();
    controls.target.set(0, 0, 0);
    controls.enabled = true;
    controls.update();
  }

  // ---------------------------------------------------------------- scene scale
  const scaleInput = document.getElementById("scale");
  const scaleValue = document.getElementById("scale-value");
  let baseScale = 1; // placement scale (tabletop in XR, 1 on desktop) times the slider
  const showScale = () => { scaleValue.textContent = `${Math.pow(10, Number(scaleInput.value)).toFixed(2)}×`; };
  function applyScale() {
    const s = baseScale * Math.pow(10, Number(scaleInput.value));
    // Scale about the point in front of the viewer stays put: keep world.position fixed (object centre).
    world.scale.setScalar(s);
    world.updateMatrixWorld(true);
    showScale();
  }
  scaleInput.addEventListener("input", applyScale);
  document.getElementById("reset").addEventListener("click", () => {
    if (renderer.xr.isPresenting) placeForXr(); else resetView();
  });
  document.getElementById("life-size").addEventListener("click", () => {
    baseScale = 1; scaleInput.value = 0; applyScale();
  });

  // ---------------------------------------------------------------- XR
  function placeForXr() {
    // Tabletop placement: the object (radius r) appears ~0.4 m in radius, 1.1 m high, 1.2 m ahead.
    const xrCam = renderer.xr.getCamera();
    const head = new THREE.Vector3().setFromMatrixPosition(xrCam.matrixWorld);
    const dir = new THREE.Vector3(0, 0, -1).applyQuaternion(xrCam.quaternion);
    dir.y = 0;
    if (dir.lengthSq() < 1e-6) dir.set(0, 0, -1);
    dir.normalize();
    baseScale = 0.4 / meta.radius;
    scaleInput.value = 0;
    world.quaternion.setFromUnitVectors(new THREE.Vector3(0, 0, -1), dir);
    world.position.copy(head).addScaledVector(dir, 1.2);
    world.position.y = Math.max(0.9, head.y - 0.3);
    applyScale();
  }

  renderer.xr.addEventListener("sessionstart", () => {
    controls.enabled = false;
    const session = renderer.xr.getSession();
    if (session && session.environmentBlendMode && session.environmentBlendMode !== "opaque") scene.background = null;
    rig.position.set(0, 0, 0); rig.quaternion.identity();
    camera.position.set(0, 0, 0); camera.quaternion.identity();
    // The XR camera pose is only known after the first XR frame.
    pendingPlacement = true;
  });
  renderer.xr.addEventListener("sessionend", () => {
    scene.background = bg;
    baseScale = 1;
    resetView();
  });
  let pendingPlacement = false;

  // Controllers: grip = grab-move; sticks = walk/turn.
  const grabs = new Map(); // controller -> true while squeezing
  let grabStart = null;
  const controllers = [0, 1].map((i) => {
    const c = renderer.xr.getController(i);
    c.userData.index = i;
    c.addEventListener("connected", (e) => { c.userData.gamepad = e.data.gamepad; c.userData.hand = e.data.handedness; });
    c.addEventListener("disconnected", () => { c.userData.gamepad = null; });
    c.addEventListener("squeezestart", () => { grabs.set(c, true); grabStart = null; });
    c.addEventListener("squeezeend", () => { grabs.delete(c); grabStart = null; });
    c.addEventListener("selectstart", (e) => {
      // A headset controller's trigger plays and pauses (not AR screen taps, which press the page's own buttons).
      if (!seq || (e.data && e.data.targetRayMode !== "tracked-pointer")) return;
      if (seq.playing) pause(); else play();
    });
    const ray = new THREE.Line(new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, -0.3)]),
      new THREE.LineBasicMaterial({ color: 0x88ccff }));
    c.add(ray);
    rig.add(c);
    return c;
  });

  const tmpV = new THREE.Vector3();
  function grabUpdate() {
    const held = [...grabs.keys()];
    if (held.length === 0) return;
    const pts = held.map((c) => new THREE.Vector3().setFromMatrixPosition(c.matrixWorld));
    if (!grabStart || grabStart.n !== held.length) {
      grabStart = { n: held.length, pts: pts.map((p) => p.clone()), pos: world.position.clone(),
        quat: world.quaternion.clone(), scale: world.scale.x };
      return;
    }
    if (held.length === 1) {
      world.position.copy(grabStart.pos).add(tmpV.subVectors(pts[0], grabStart.pts[0]));
    } else {
      // Two hands: scale by the change in hand distance, turn by the change in their heading,
      // about the midpoint between the hands.
      const a0 = grabStart.pts[0], b0 = grabStart.pts[1], a = pts[0], b = pts[1];
      const d0 = a0.distanceTo(b0), d = a.distanceTo(b);
      const s = d0 > 1e-3 ? d / d0 : 1;
      const yaw = Math.atan2(-(b.z - a.z), b.x - a.x) - Math.atan2(-(b0.z - a0.z), b0.x - a0.x);
      const q = new THREE.Quaternion().setFromAxisAngle(new THREE.Vector3(0, 1, 0), yaw);
      const m0 = a0.clone().add(b0).multiplyScalar(0.5), m1 = a.clone().add(b).multiplyScalar(0.5);
      const rel = grabStart.pos.clone().sub(m0).applyQuaternion(q).multiplyScalar(s);
      world.position.copy(m1).add(rel);
      world.quaternion.copy(q).multiply(grabStart.quat);
      world.scale.setScalar(grabStart.scale * s);
      baseScale = world.scale.x / Math.pow(10, Number(scaleInput.value));
    }
    world.updateMatrixWorld(true);
  }

  let snapReady = true;
  function sticks(dt) {
    for (const c of controllers) {
      const gp = c.userData.gamepad;
      if (!gp || gp.axes.length < 4) continue;
      const x = gp.axes[2], y = gp.axes[3];
      if (c.userData.hand === "right") {
        if (Math.abs(x) > 0.7 && snapReady) {
          // Snap-turn the rig 30 degrees about the viewer's head.
          const head = new THREE.Vector3().setFromMatrixPosition(renderer.xr.getCamera().matrixWorld);
          const q = new THREE.Quaternion().setFromAxisAngle(new THREE.Vector3(0, 1, 0), -Math.sign(x) * Math.PI / 6);
          rig.position.sub(head).applyQuaternion(q).add(head);
          rig.quaternion.premultiply(q);
          snapReady = false;
        } else if (Math.abs(x) < 0.3) snapReady = true;
      } else if (Math.abs(x) > 0.15 || Math.abs(y) > 0.15) {
        const xrCam = renderer.xr.getCamera();
        const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(xrCam.getWorldQuaternion(new THREE.Quaternion()));
        fwd.y = 0; fwd.normalize();
        const right = new THREE.Vector3(-fwd.z, 0, fwd.x);
        rig.position.addScaledVector(fwd, -y * 1.5 * dt).addScaledVector(right, x * 1.5 * dt);
      }
    }
  }

  // ---------------------------------------------------------------- buttons
  const buttons = document.getElementById("xr-buttons");
  buttons.appendChild(VRButton.createButton(renderer, { optionalFeatures: ["hand-tracking"] }));
  if (navigator.xr && (await navigator.xr.isSessionSupported("immersive-ar").catch(() => false))) {
    buttons.appendChild(ARButton.createButton(renderer, {
      optionalFeatures: ["local-floor", "dom-overlay"], domOverlay: { root: document.getElementById("panel") },
    }));
  }

  // ---------------------------------------------------------------- loop
  const gl = renderer.getContext();
  const probe = new Uint8Array(4 * 16 * 16);
  const bg255 = [bg.r, bg.g, bg.b].map((v) => Math.round(v * 255));
  let last = performance.now();
  function frame(t) {
    const dt = Math.min(0.1, (t - last) / 1000);
    last = t;
    if (seq && seq.playing) advance(dt);
    if (renderer.xr.isPresenting) {
      grabUpdate();
      sticks(dt);
    } else if (!fixedView) {
      controls.update();
    }
    renderer.render(scene, camera);
    api.frames += 1;
    if (pendingPlacement && renderer.xr.isPresenting) {
      // The headset pose is known once a frame has been rendered: place the scene in front of it.
      placeForXr();
      pendingPlacement = false;
    }
    if (api.firstPixelsMs === null && !renderer.xr.isPresenting) {
      // First frame with splat pixels at the centre of the view (probe 16x16 pixels once per frame).
      const w = gl.drawingBufferWidth, h = gl.drawingBufferHeight;
      gl.readPixels((w >> 1) - 8, (h >> 1) - 8, 16, 16, gl.RGBA, gl.UNSIGNED_BYTE, probe);
      for (let i = 0; i < probe.length; i += 4) {
        if (Math.abs(probe[i] - bg255[0]) + Math.abs(probe[i + 1] - bg255[1]) + Math.abs(probe[i + 2] - bg255[2]) > 30) {
          api.firstPixelsMs = performance.now();
          break;
        }
      }
    }
  }

  window.addEventListener("resize", () => {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight);
  });

  api.setView = (c2wRows, fovyDeg) => {
    fixedView = true;
    controls.enabled = false;
    setCameraFromCv(c2wRows, fovyDeg);
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
  };
  api.resetView = resetView;
  api.renderer = renderer;
  api.camera = camera;
  api.world = world;

  resetView();
  renderer.setAnimationLoop(frame);
}

api.ready = main().then(() => true, (e) => {
  api.error = String(e && e.stack ? e.stack : e);
  status(`error: ${e}`);
  console.error(e);
  return false;
});
