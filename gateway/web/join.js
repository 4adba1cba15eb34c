// The join page: microphone (and camera preview), one RTCPeerConnection to the gateway, signalling over /ws.
// `window.gateway` shows the page's state (used by the end-to-end tests too).
'use strict';

const $ = (id) => document.getElementById(id);

const MESSAGES = {
  'wrong-pin': 'Wrong PIN. Please try again.',
  'room-full': 'This room is full.',
  'not-found': 'There is no room with this number.',
  'blocked': 'Too many wrong PINs from your address. Please try again later.',
  'no-microphone': 'No microphone: allow this page to use one, or connect one, and try again.',
  'connection-lost': 'The connection to the conference was lost.',
  'kicked': 'You were removed from the conference.',
  'rtp-timeout': 'The connection to the conference was lost (no audio).',
  'shutdown': 'The conference server is restarting. Please join again shortly.',
  'unavailable': 'The conference server is not taking calls now.',
  'bad-sdp': 'Your browser and the conference could not agree on audio.',
  'media-unavailable': 'The conference server cannot set up audio now. Please try again.',
  'no-media': 'The audio connection could not be set up (a firewall may block it).',
  'insecure': 'Browsers allow the microphone only on secure pages: open this page over HTTPS '
              + '(ask the conference administrator for the address).',
  'reconnecting': 'The audio connection is interrupted; waiting for it to come back…',
};

// Joined but no audio connection after this long: give up (the gateway gives up too).
const CONNECT_TIMEOUT_MS = 20000;

const gateway = {
  state: 'idle',         // idle, joining, joined
  id: null,
  error: null,           // code of the last error shown
  participants: new Map(),
  joinSentAt: 0,
  firstAudioMs: null,    // join sent -> first audio packet received
  ended: null,
  candidates: [],        // the gateway's ICE candidates
  connection: null,      // the peer connection's state once joined
  camera: false,         // the camera is on (shown to the user; video is not sent yet)
};
window.gateway = gateway;

let ws = null;
let pc = null;
let microphone = null;
let audioContext = null;
let remoteAnalyser = null;
let pendingLocal = [];   // candidates found before the join went out
let pendingRemote = [];  // candidates that came before the answer
let connectTimer = null;

function show(code, text, info) {
  const el = $('message');
  el.textContent = text || MESSAGES[code] || code;
  el.className = info ? 'info' : '';
  el.hidden = false;
  if (!info) gateway.error = code;
}

function clearMessage() {
  $('message').hidden = true;
  gateway.error = null;
}

function socket() {
  if (ws && ws.readyState <= WebSocket.OPEN) return Promise.resolve(ws);
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const s = new WebSocket(`${scheme}//${location.host}/ws`);
    s.onopen = () => { ws = s; resolve(s); };
    s.onerror = () => reject(new Error('no connection'));
    s.onmessage = (e) => onMessage(JSON.parse(e.data));
    s.onclose = () => {
      ws = null;
      if (gateway.state !== 'idle') {
        teardown();
        show('connection-lost');
      }
    };
  });
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function audioContextNow() {
  if (!audioContext) audioContext = new AudioContext();
  if (audioContext.state === 'suspended') audioContext.resume();
  return audioContext;
}

async function join(event) {
  event.preventDefault();
  if (gateway.state !== 'idle') return;
  clearMessage();
  const room = $('room').value.trim();
  if (!room) return show('room', 'Enter the room number.');
  if (!window.isSecureContext || !navigator.mediaDevices) return show('insecure');
  gateway.state = 'joining';
  $('join').disabled = true;
  const original = $('original').checked;
  // "Original sound" (for headphones and music) turns the browser's processing off.
  const audio = { echoCancellation: !original, noiseSuppression: !original, autoGainControl: !original };
  const video = $('camera').checked ? { width: { ideal: 640 }, height: { ideal: 360 } } : false;
  microphone = await capture({ audio, video });
  if (!microphone && video) microphone = await capture({ audio });
  if (!microphone) {
    gateway.state = 'idle';
    $('join').disabled = false;
    return show('no-microphone');
  }
  gateway.camera = microphone.getVideoTracks().length > 0;
  $('self').srcObject = gateway.camera ? microphone : null;
  $('self').hidden = !gateway.camera;
  try {
    await socket();
  } catch (e) {
    teardown();
    return show('connection-lost', 'The conference server cannot be reached.');
  }
  meter(microphone);
  pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);
  pc.ontrack = (e) => listen(e.streams[0] || new MediaStream([e.track]));
  pc.onicecandidate = (e) => {
    if (!e.candidate) return;
    const c = { type: 'candidate', candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid,
                sdpMLineIndex: e.candidate.sdpMLineIndex };
    if (pendingLocal) pendingLocal.push(c); else send(c);
  };
  pc.onconnectionstatechange = () => {
    if (!pc || gateway.state !== 'joined') return;
    gateway.connection = pc.connectionState;
    if (pc.connectionState === 'connected') {
      clearTimeout(connectTimer);
      if ($('message').textContent === MESSAGES.reconnecting) $('message').hidden = true;
    } else if (pc.connectionState === 'disconnected') {
      show('reconnecting', null, true);
    } else if (pc.connectionState === 'failed') {
      send({ type: 'leave' });
      teardown();
      show('connection-lost');
    }
  };
  pendingLocal = [];
  pendingRemote = [];
  gateway.candidates = [];
  gateway.firstAudioMs = null;
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  gateway.joinSentAt = performance.now();
  send({ type: 'join', room, pin: $('pin').value.trim() || null, name: $('name').value.trim(),
         sdp: pc.localDescription.sdp });
  for (const c of pendingLocal) send(c);
  pendingLocal = null;
  history.replaceState(null, '', `/join/${encodeURIComponent(room)}`);
  watchFirstAudio();
}

// The user's microphone (and camera when asked for), or null when the browser gives none.
async function capture(constraints) {
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (e) {
    return null;
  }
}

async function onMessage(m) {
  switch (m.type) {
    case 'answer':
      await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
      for (const c of pendingRemote) await pc.addIceCandidate(c);
      pendingRemote = null;
      break;
    case 'candidate': {
      const c = { candidate: m.candidate, sdpMid: m.sdpMid, sdpMLineIndex: m.sdpMLineIndex };
      gateway.candidates.push(m.candidate);
      if (!pc) break;
      if (pendingRemote) pendingRemote.push(c); else await pc.addIceCandidate(c);
      break;
    }
    case 'joined':
      gateway.state = 'joined';
      gateway.id = m.id;
      gateway.participants = new Map(m.participants.map((p) => [p.id, p]));
      $('room-title').textContent = `Room ${m.room}`;
      $('join-form').hidden = true;
      $('in-room').hidden = false;
      show('joined', m.moderator ? 'You joined as moderator.' : 'You joined the conference.', true);
      render();
      connectTimer = setTimeout(() => {
        if (!pc || pc.connectionState === 'connected') return;
        send({ type: 'leave' });
        teardown();
        show('no-media');
      }, CONNECT_TIMEOUT_MS);
      break;
    case 'participants':
      gateway.participants = new Map(m.participants.map((p) => [p.id, p]));
      render();
      break;
    case 'participant':
      gateway.participants.set(m.participant.id, m.participant);
      render();
      break;
    case 'left':
      gateway.participants.delete(m.id);
      render();
      break;
    case 'ended':
      gateway.ended = m.reason;
      teardown();
      if (m.reason !== 'left') show(m.reason);
      break;
    case 'error':
      if (gateway.state === 'joining') teardown();
      show(m.code, MESSAGES[m.code] || m.message);
      break;
  }
}

function render() {
  const list = $('participants');
  list.replaceChildren();
  const sorted = [...gateway.participants.values()].sort((a, b) => a.id - b.id);
  for (const p of sorted) {
    const li = document.createElement('li');
    li.dataset.id = p.id;
    if (p.talking && !p.muted) li.className = 'talking';
    const name = document.createElement('span');
    name.textContent = (p.display_name || p.user || 'Caller') + (p.id === gateway.id ? ' (you)' : '');
    const tags = document.createElement('span');
    tags.className = 'tags';
    tags.textContent = [p.talking && !p.muted ? 'talking' : '', p.muted ? 'muted' : '',
                        p.user === 'webrtc' ? 'browser' : 'phone'].filter(Boolean).join(' · ');
    li.append(name, tags);
    list.append(li);
  }
  const me = gateway.participants.get(gateway.id);
  const muted = !!(me && me.muted);
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
  $('mute').classList.toggle('muted', muted);
}

function meter(stream) {
  const ctx = audioContextNow();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const draw = () => {
    if (!microphone) { $('level').style.width = '0'; return; }
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const db = 10 * Math.log10(sum / samples.length + 1e-12);
    $('level').style.width = `${Math.max(0, Math.min(100, (db + 60) * 100 / 60))}%`;
    requestAnimationFrame(draw);
  };
  draw();
}

function listen(stream) {
  $('remote').srcObject = stream;
  const ctx = audioContextNow();
  remoteAnalyser = ctx.createAnalyser();
  remoteAnalyser.fftSize = 8192;
  ctx.createMediaStreamSource(stream).connect(remoteAnalyser);
}

// What arrives from the conference: the strongest frequency, and the level (dB full scale)
// at each of `frequencies`.
gateway.remoteTone = (frequencies) => {
  if (!remoteAnalyser) return null;
  const bins = new Float32Array(remoteAnalyser.frequencyBinCount);
  remoteAnalyser.getFloatFrequencyData(bins);
  const hzPerBin = audioContext.sampleRate / remoteAnalyser.fftSize;
  let best = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const levels = (frequencies || []).map((f) => {
    const centre = Math.round(f / hzPerBin);
    return Math.max(...bins.slice(Math.max(0, centre - 2), centre + 3));
  });
  return { hz: best * hzPerBin, db: bins[best], levels };
};

async function watchFirstAudio() {
  while (pc && gateway.firstAudioMs === null) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 0 && gateway.firstAudioMs === null) {
        gateway.firstAudioMs = Math.round(performance.now() - gateway.joinSentAt);
      }
    });
    await new Promise((r) => setTimeout(r, 20));
  }
}

function teardown() {
  clearTimeout(connectTimer);
  gateway.state = 'idle';
  gateway.connection = null;
  gateway.id = null;
  if (pc) pc.close();
  pc = null;
  if (microphone) for (const t of microphone.getTracks()) t.stop();
  microphone = null;
  gateway.camera = false;
  $('self').srcObject = null;
  remoteAnalyser = null;
  $('remote').srcObject = null;
  $('join-form').hidden = false;
  $('in-room').hidden = true;
  $('join').disabled = false;
}

function keypad() {
  for (const key of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#']) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = key;
    b.onclick = () => gateway.dtmf(key);
    $('keypad').append(b);
  }
}

// RFC 4733 events in the audio stream, as a desk phone sends them.
gateway.dtmf = (digits) => {
  const sender = pc && pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
  if (sender && sender.dtmf && sender.dtmf.canInsertDTMF) sender.dtmf.insertDTMF(digits, 120, 80);
};

$('join-form').addEventListener('submit', join);
$('mute').onclick = () => {
  const me = gateway.participants.get(gateway.id);
  send({ type: 'mute', muted: !(me && me.muted) });
};
$('leave').onclick = () => send({ type: 'leave' });
keypad();
const fromPath = location.pathname.match(/^\/join\/([^/]+)/);
if (fromPath) $('room').value = decodeURIComponent(fromPath[1]);
if (!window.isSecureContext) show('insecure');
