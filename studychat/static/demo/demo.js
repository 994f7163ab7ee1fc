/*
 * Demo participant page: the reference client of this backend.
 *
 * Plain JavaScript, no library, no build step. Each call to the service is one small
 * function in the "API calls" part below; the rest only draws the page. Copy what you
 * need into a study frontend (React, Vue, ...): the calls do not depend on this page.
 *
 * The participant id comes from the URL (?PROLIFIC_PID=..., as Prolific sends it).
 * Every request body is JSON (Content-Type: application/json). Every error answer is
 * JSON {"error": "a sentence you may show"}; 5xx ones never contain internals.
 *
 * THE CALLS, AND THEIR UNUSUAL STATUS CODES (existing frontends depend on them)
 *
 * POST /check_participation {"id": participantId}
 *   302 {"participated": true}  a record exists: this person took part already.
 *       A redirect status WITHOUT a Location header: fetch() cannot follow it, so it
 *       hands it to you as response.status === 302. Keep fetch's default
 *       redirect: "follow"; "manual" would turn it into status 0 ("opaqueredirect").
 *   204 (empty body)            no record: the person may take part.
 *
 * POST /chat {"messages": [...], "participantId": id, "stream": true}
 *   Send the WHOLE conversation each turn: [{role: "system"|"user"|"assistant",
 *   content: "text", image?: "data:image/png;base64,..."}]. Only user messages may
 *   carry an image, inline as a data URL (PNG, JPEG, GIF or WebP; no links).
 *   202 {"jobId": "..."}        queued (202, not 200): fetch the answer with jobId.
 *   400 {"error"}               a field is invalid; the sentence names it.
 *   413 {"error"}               the body exceeds MAX_CONTENT_LENGTH (8 MB by default).
 *   429 {"error"}               too many turns per minute (see Retry-After), or the
 *                               participant's or study's token budget is spent.
 *   503 {"error"}               the queue is down for a moment: try again shortly.
 *   "stream": true asks the worker to stream the answer, for GET /stream/<jobId>.
 *
 * GET /stream/<jobId>           Server-Sent Events, read with EventSource:
 *   event: delta  data {"content": "..."}  the next delta of the answer's text
 *   event: done   data <chat.completion>   the whole answer: the same object that
 *                                           /check_response returns as "response"
 *   event: error  data {"error": "..."}    the model call failed
 *   EventSource reports a broken connection, a non-stream answer (404 for an
 *   unknown job) and the server's own "error" event to the same "error" listener.
 *   This page then closes the stream and asks /check_response, which always has
 *   the answer of record (or the error).
 *
 * POST /check_response {"jobId": "...", "wait": 20}
 *   200 {"processing": true}    not ready yet: ask again.
 *   200 {"response": {...}}     an OpenAI chat.completion object; the text is
 *                               response.choices[0].message.content.
 *   404 {"error"}               no such job (unknown, or expired after RESULT_TTL_S).
 *   502 {"error"}               the model call failed for good.
 *   "wait" (seconds, at most 25) holds the request open until the answer is ready
 *   (a long poll). The loop below also copes with a server that answers at once: it
 *   then asks every POLL_INTERVAL_MS.
 *
 * POST /save {"participantId", "messages": [...], "tasks": {...}, "condition": any}
 *   201 {"message": "OK", "prolificCode": "...", "prolificUrl": "..."}  stored: show
 *                               the code and link back to Prolific.
 *   304 (empty body)            a record for this participant exists already; it was
 *                               NOT changed. Not a cache answer: fetch passes it on.
 *   400 / 413 {"error"}         as for /chat.
 */
"use strict";

// ---------------------------------------------------------------------------------
// Settings of this page
// ---------------------------------------------------------------------------------

// The server's MAX_IMAGE_BYTES (5 MB by default) is the real limit and answers 400
// naming the field; checking here first spares the participant a long upload.
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
// Long poll: below the server's maximum of 25 s and routers' 30 s request timeout.
const LONG_POLL_S = 20;
// Pause between asks when the server answered "processing" at once (no long poll).
const POLL_INTERVAL_MS = 500;
// Pause before asking again after a 503 or a network error while waiting for an answer.
const RETRY_MS = 2000;
// Give up waiting for one answer after this long (the worker's own retries are shorter).
const ANSWER_DEADLINE_MS = 5 * 60 * 1000;

// The study's conditions: each participant gets one at random, kept for the session.
const CONDITIONS = {
  A: "You are a helpful assistant. Answer in one or two sentences.",
  B: "You are a helpful assistant. Answer in detail, with an example.",
};

// ---------------------------------------------------------------------------------
// API calls: one function per call; each returns data or throws an Error whose
// message can be shown to the participant.
// ---------------------------------------------------------------------------------

/** POST a JSON body; a failed connection becomes an Error with a readable message. */
async function postJson(path, body) {
  try {
    return await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (networkError) {
    throw new Error("The study server could not be reached. Check your connection.");
  }
}

/** The Error for an answer we did not expect, with the server's {"error"} sentence. */
async function errorFrom(response) {
  let sentence = "";
  try {
    sentence = (await response.json()).error || "";
  } catch (notJson) {
    // e.g. a proxy's HTML error page: the status alone must do
  }
  return new Error(sentence || `The server answered ${response.status}.`);
}

/** Whether a record exists for this participant (302), or not (204). */
async function checkParticipation(participantId) {
  const response = await postJson("/check_participation", { id: participantId });
  if (response.status === 302) return true; // no Location header: not followed
  if (response.status === 204) return false;
  throw await errorFrom(response);
}

/** Queue one chat turn (the whole conversation); returns the jobId. */
async function startChat(messages, participantId) {
  const response = await postJson("/chat", { messages, participantId, stream: true });
  if (response.status !== 202) throw await errorFrom(response);
  return (await response.json()).jobId;
}

/** The answer as it is written, via EventSource; rejects on any error before "done". */
function streamAnswer(jobId, onDelta) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(`/stream/${encodeURIComponent(jobId)}`);
    source.addEventListener("delta", (event) => onDelta(JSON.parse(event.data).content));
    source.addEventListener("done", (event) => {
      source.close();
      resolve(JSON.parse(event.data));
    });
    source.addEventListener("error", (event) => {
      // Close, and let the caller poll. EventSource would retry by itself (the server
      // resumes at Last-Event-ID), but a stream that broke once, e.g. behind a proxy
      // that cuts or buffers it, tends to break again; /check_response always works.
      source.close();
      const sentByServer = typeof event.data === "string"; // "event: error" carries data
      reject(new Error(sentByServer ? JSON.parse(event.data).error : "stream interrupted"));
    });
  });
}

/** The answer by (long) polling /check_response; returns the chat.completion object. */
async function pollAnswer(jobId) {
  const deadline = Date.now() + ANSWER_DEADLINE_MS;
  while (Date.now() < deadline) {
    const asked = Date.now();
    let response;
    try {
      response = await postJson("/check_response", { jobId, wait: LONG_POLL_S });
    } catch (networkError) {
      await sleep(RETRY_MS); // the job goes on without us: ask again
      continue;
    }
    if (response.status === 503) {
      await sleep(RETRY_MS); // Redis is back in a moment; the answer will still be there
      continue;
    }
    if (response.status !== 200) throw await errorFrom(response); // 404, 502, 400
    const body = await response.json();
    if (body.response) return body.response;
    // {"processing": true}: ask again, at once after a long poll, else after a pause.
    await sleep(POLL_INTERVAL_MS - (Date.now() - asked));
  }
  throw new Error("The answer is taking too long. Please try again.");
}

/** The answer, streamed where possible, else polled; says which transport gave it. */
async function receiveAnswer(jobId, onDelta) {
  if ("EventSource" in window) {
    try {
      return { completion: await streamAnswer(jobId, onDelta), transport: "stream" };
    } catch (streamError) {
      console.info(`Stream of ${jobId} ended early (${streamError.message}); polling.`);
    }
  }
  return { completion: await pollAnswer(jobId), transport: "polling" };
}

/** Store the participant's record once; returns {prolificCode, prolificUrl}, or null (304). */
async function saveRecord(record) {
  const response = await postJson("/save", record);
  if (response.status === 201) return response.json();
  if (response.status === 304) return null; // saved before; nothing was overwritten
  throw await errorFrom(response);
}

// ---------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

const state = {
  participantId: "",
  condition: "",
  conversation: [], // user and assistant messages, as sent to /chat (system one apart)
  attachment: null, // {dataUrl, name, bytes} of the image for the next message
  busy: false,
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** ?PROLIFIC_PID=..., else a new id that is put in the URL so a reload keeps it. */
function participantFromUrl() {
  const url = new URL(window.location.href);
  const fromProlific = url.searchParams.get("PROLIFIC_PID");
  if (fromProlific) return { id: fromProlific, source: "from ?PROLIFIC_PID" };
  const random = crypto.getRandomValues(new Uint8Array(8));
  const id = "demo-" + Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  url.searchParams.set("PROLIFIC_PID", id);
  window.history.replaceState(null, "", url);
  return { id, source: "made up: no ?PROLIFIC_PID in the URL" };
}

/** A random condition, kept for this participant while the tab is open. */
function chooseCondition(participantId) {
  const key = `demo-condition:${participantId}`;
  let condition = sessionStorage.getItem(key);
  if (!(condition in CONDITIONS)) {
    condition = Math.random() < 0.5 ? "A" : "B";
    sessionStorage.setItem(key, condition);
  }
  return condition;
}

function systemMessage() {
  return { role: "system", content: CONDITIONS[state.condition] };
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setParticipation(stateName, text) {
  $("participation").dataset.state = stateName;
  $("participation").textContent = text;
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  $("save").disabled = busy;
  $("send").textContent = busy ? "Waiting…" : "Send";
}

/** Add a message to the list; text goes in as textContent, never as HTML. */
function appendMessage(message) {
  const list = $("messages");
  list.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.className = `message ${message.role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = message.role === "user" ? "You" : "Assistant";
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = message.content;
  item.append(who, text);
  if (message.image) {
    const image = document.createElement("img");
    image.src = message.image;
    image.alt = "Image you sent";
    item.append(image);
  }
  list.append(item);
  item.scrollIntoView({ block: "nearest" });
  return item;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result); // "data:image/png;base64,..."
    reader.onerror = () => reject(new Error("The image could not be read."));
    reader.readAsDataURL(file);
  });
}

function setAttachment(attachment) {
  state.attachment = attachment;
  $("attachment").hidden = !attachment;
  $("attachment-preview").src = attachment ? attachment.dataUrl : "";
  $("attachment-name").textContent = attachment ? attachment.name : "";
  if (!attachment) $("image-input").value = "";
}

async function onImageChosen() {
  const file = $("image-input").files[0];
  showError("");
  if (!file) return setAttachment(null);
  if (!IMAGE_TYPES.includes(file.type)) {
    setAttachment(null);
    return showError("Choose a PNG, JPEG, GIF or WebP image.");
  }
  if (file.size > MAX_IMAGE_BYTES) {
    setAttachment(null);
    const mb = (n) => (n / 1024 / 1024).toFixed(1);
    return showError(`This image has ${mb(file.size)} MB; images may have ${mb(MAX_IMAGE_BYTES)} MB at most.`);
  }
  try {
    setAttachment({ dataUrl: await readAsDataUrl(file), name: file.name, bytes: file.size });
  } catch (error) {
    setAttachment(null);
    showError(error.message);
  }
}

/** One chat turn: queue it, show the answer as it comes, keep both in the conversation. */
async function onSend(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || state.busy) return;
  const message = { role: "user", content: text };
  if (state.attachment) message.image = state.attachment.dataUrl;
  const attachment = state.attachment;
  showError("");
  setBusy(true);
  const sent = appendMessage(message);
  const reply = appendMessage({ role: "assistant", content: "" });
  reply.classList.add("pending");
  const replyText = reply.querySelector(".text");
  $("chat-input").value = "";
  setAttachment(null);
  try {
    const messages = [systemMessage(), ...state.conversation, message];
    const jobId = await startChat(messages, state.participantId);
    const answer = await receiveAnswer(jobId, (delta) => (replyText.textContent += delta));
    // The final object is the answer of record: it replaces the streamed deltas.
    const content = answer.completion.choices[0].message.content;
    replyText.textContent = content;
    reply.classList.remove("pending");
    reply.dataset.transport = answer.transport; // which path delivered it (tests read it)
    reply.querySelector(".who").textContent += ` · by ${answer.transport}`;
    state.conversation.push(message, { role: "assistant", content });
  } catch (error) {
    // Nothing of this turn counts: the participant can send it again as it was.
    sent.remove();
    reply.remove();
    $("chat-input").value = text;
    setAttachment(attachment);
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

/** Bytes a base64 data URL decodes to (4 characters carry 3 bytes; "=" pads). */
function decodedBytes(dataUrl) {
  const payload = dataUrl.slice(dataUrl.indexOf(",") + 1);
  return (payload.length * 3) / 4 - (payload.match(/=*$/)[0].length);
}

/**
 * The record /save stores. Images are replaced by their size: several of them could
 * exceed the body limit (MAX_CONTENT_LENGTH), and every chat turn's messages, images
 * included, are kept in the chat_log collection anyway.
 */
function record(helpfulness) {
  const messages = [systemMessage(), ...state.conversation].map(({ image, ...rest }) =>
    image ? { ...rest, imageBytes: decodedBytes(image) } : rest,
  );
  return {
    participantId: state.participantId,
    messages,
    tasks: { helpfulness: Number(helpfulness) },
    condition: state.condition,
  };
}

async function onSave() {
  const answer = document.querySelector('input[name="helpfulness"]:checked');
  if (state.conversation.length === 0) return showError("Chat with the assistant first.");
  if (!answer) return showError("Answer the task first.");
  showError("");
  setBusy(true);
  try {
    const saved = await saveRecord(record(answer.value));
    $("study").disabled = true;
    if (saved === null) {
      setParticipation("participated", "Saved before: your earlier submission counts.");
      return;
    }
    $("completion-code").textContent = saved.prolificCode;
    $("completion-link").href = saved.prolificUrl;
    $("completion").hidden = false;
    $("completion").scrollIntoView({ block: "nearest" });
    setParticipation("saved", "Saved: thank you for taking part.");
  } catch (error) {
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

/** Show who and which condition, then ask whether this participant took part before. */
async function start() {
  const participant = participantFromUrl();
  state.participantId = participant.id;
  state.condition = chooseCondition(participant.id);
  $("participant-id").textContent = participant.id;
  $("participant-source").textContent = `(${participant.source})`;
  $("condition").textContent = state.condition;
  $("condition-detail").textContent = `system prompt: “${CONDITIONS[state.condition]}”`;
  $("chat-form").addEventListener("submit", onSend);
  $("chat-input").addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line, as in most chat apps.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("image-input").addEventListener("change", onImageChosen);
  $("attachment-remove").addEventListener("click", () => setAttachment(null));
  $("save").addEventListener("click", onSave);
  try {
    if (await checkParticipation(participant.id)) {
      setParticipation("participated", "You have already taken part in this study.");
      return; // the study stays disabled
    }
    setParticipation("new", "First time: welcome! You may take part.");
    $("study").disabled = false;
    $("chat-input").focus();
  } catch (error) {
    setParticipation("unknown", "Could not be checked.");
    showError(error.message);
  }
}

start();
