/*
 * Demo participant page: the reference client of this backend.
 *
 * Plain JavaScript, no library, no build step. Each call to the service is one small
 * function in the "API calls" part below; the rest only draws the page. Copy what you
 * need into a study frontend (React, Vue, ...): the calls do not depend on this page.
 *
 * The participant comes from the URL as Prolific sends it: ?PROLIFIC_PID=...&STUDY_ID=
 * ...&SESSION_ID=.... The study (conditions, prompts, models) is defined on the server
 * (STUDY_FILE): this page never sees a system prompt, and sends only the new message.
 * Every request body is JSON (Content-Type: application/json). Every error answer is
 * JSON {"error": "a sentence you may show"}; 5xx ones never contain internals.
 *
 * THE CALLS, AND THEIR STATUS CODES
 *
 * POST /sessions {"participantId": PROLIFIC_PID, "studyId": STUDY_ID, "sessionId": SESSION_ID}
 *   201 {"sessionToken", "condition", "messages", "client", "maxTurns", "pendingJobId"}
 *                               a new session: the server assigned the condition;
 *                               "messages" holds the opening message, if any.
 *   200 (the same fields)       the participant's session so far (a reload, a second
 *                               tab): the same token and condition, the conversation,
 *                               and the jobId of an answer still on its way, if any.
 *   409 {"error"}               this participant has already saved: do not start again.
 *   404 {"error"}               the server has no study (STUDY_FILE is not set).
 *   The sessionToken is the participant's credential: send it with every call below.
 *
 * POST /chat {"sessionToken": token, "message": {"content": "text", "image"?: dataUrl},
 *             "stream": true}
 *   Only the new message: the server adds the condition's prompt and the conversation.
 *   An image travels inline as a data URL (PNG, JPEG, GIF or WebP; no links).
 *   202 {"jobId": "..."}        queued (202, not 200): fetch the answer with jobId.
 *   400 {"error"}               a field is invalid; the sentence names it.
 *   401 {"error"}               the token is unknown or expired: POST /sessions again.
 *   409 {"error"}               the previous answer is still on its way, or saved.
 *   413 {"error"}               the body exceeds MAX_CONTENT_LENGTH (8 MB by default).
 *   429 {"error"}               too many turns per minute (see Retry-After), a token
 *                               budget is spent, or the conversation reached its end.
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
 * POST /save {"sessionToken": token, "tasks": {...}, ...any other fields}
 *   201 {"message": "OK", "prolificCode": "...", "prolificUrl": "..."}  stored: show
 *                               the code and link back to Prolific. The server stores
 *                               the conversation it holds, the condition and Prolific's
 *                               ids; "tasks" and the other fields are stored as sent.
 *   304 (empty body)            a record for this participant exists already; it was
 *                               NOT changed. Not a cache answer: fetch passes it on.
 *   400 / 401 / 413 {"error"}   as for /chat.
 *
 * Frontends of the legacy API (the browser sends the whole conversation to /chat and
 * the record to /save, and asks POST /check_participation) keep working: see README.
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

/** The participant's session: {created, session}, or null when they already saved (409). */
async function openSession(ids) {
  const response = await postJson("/sessions", ids);
  if (response.status === 409) return null;
  if (response.status !== 200 && response.status !== 201) throw await errorFrom(response);
  return { created: response.status === 201, session: await response.json() };
}

/** Queue the session's next turn (the new message only); returns the jobId. */
async function startChat(sessionToken, message) {
  const response = await postJson("/chat", { sessionToken, message, stream: true });
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
async function saveRecord(sessionToken, tasks) {
  const response = await postJson("/save", { sessionToken, tasks });
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
  sessionToken: "", // the server-issued credential; kept in memory only
  turns: 0, // messages the participant sent that were answered
  attachment: null, // {dataUrl, name, bytes} of the image for the next message
  busy: false,
};

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** ?PROLIFIC_PID=..., else a new id that is put in the URL so a reload keeps it. */
function participantFromUrl() {
  const url = new URL(window.location.href);
  const ids = { studyId: url.searchParams.get("STUDY_ID"), sessionId: url.searchParams.get("SESSION_ID") };
  const fromProlific = url.searchParams.get("PROLIFIC_PID");
  if (fromProlific) return { id: fromProlific, source: "from ?PROLIFIC_PID", ...ids };
  const random = crypto.getRandomValues(new Uint8Array(8));
  const id = "demo-" + Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  url.searchParams.set("PROLIFIC_PID", id);
  window.history.replaceState(null, "", url);
  return { id, source: "made up: no ?PROLIFIC_PID in the URL", ...ids };
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

/** One chat turn: send the new message, show the answer as it comes (the server keeps both). */
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
  $("chat-input").value = "";
  setAttachment(null);
  try {
    const { role, ...newMessage } = message; // the server knows who speaks
    const jobId = await startChat(state.sessionToken, newMessage);
    await showAnswer(reply, jobId);
  } catch (error) {
    // The server keeps the failed message for the record, but the model will not see
    // it: the participant can send it again as it was.
    sent.remove();
    reply.remove();
    $("chat-input").value = text;
    setAttachment(attachment);
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

/** Wait for a turn's answer in `reply` (streamed, else polled) and show it. */
async function showAnswer(reply, jobId) {
  const replyText = reply.querySelector(".text");
  const answer = await receiveAnswer(jobId, (delta) => (replyText.textContent += delta));
  // The final object is the answer of record: it replaces the streamed deltas.
  replyText.textContent = answer.completion.choices[0].message.content;
  reply.classList.remove("pending");
  reply.dataset.transport = answer.transport; // which path delivered it (tests read it)
  reply.querySelector(".who").textContent += ` · by ${answer.transport}`;
  state.turns += 1;
}

async function onSave() {
  const answer = document.querySelector('input[name="helpfulness"]:checked');
  if (state.turns === 0) return showError("Chat with the assistant first.");
  if (!answer) return showError("Answer the task first.");
  showError("");
  setBusy(true);
  try {
    const saved = await saveRecord(state.sessionToken, { helpfulness: Number(answer.value) });
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

/** Show a resumed session's conversation, and wait for an answer still on its way. */
async function showConversation(session) {
  for (const message of session.messages) {
    if (message.error) continue; // failed turns are kept for the record, not shown again
    appendMessage(message);
    if (message.role === "user") state.turns += 1;
  }
  state.turns -= session.pendingJobId ? 1 : 0;
  if (session.pendingJobId) {
    const reply = appendMessage({ role: "assistant", content: "" });
    reply.classList.add("pending");
    setBusy(true);
    try {
      await showAnswer(reply, session.pendingJobId);
    } finally {
      setBusy(false);
    }
  }
}

function wireControls() {
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
}

/** Open the participant's session: the server assigns the condition and holds the chat. */
async function start() {
  const participant = participantFromUrl();
  state.participantId = participant.id;
  $("participant-id").textContent = participant.id;
  $("participant-source").textContent = `(${participant.source})`;
  wireControls();
  try {
    const opened = await openSession({
      participantId: participant.id,
      ...(participant.studyId ? { studyId: participant.studyId } : {}),
      ...(participant.sessionId ? { sessionId: participant.sessionId } : {}),
    });
    if (opened === null) {
      setParticipation("participated", "You have already taken part in this study.");
      return; // the study stays disabled
    }
    const { session } = opened;
    state.sessionToken = session.sessionToken;
    $("condition").textContent = session.condition;
    $("condition-detail").textContent = "assigned by the server; its prompt stays there";
    setParticipation(
      "new",
      opened.created
        ? "First time: welcome! You may take part."
        : "Welcome back: your conversation so far.",
    );
    $("study").disabled = false;
    await showConversation(session);
    $("chat-input").focus();
  } catch (error) {
    setParticipation("unknown", "Could not be checked.");
    showError(error.message);
  }
}

start();
