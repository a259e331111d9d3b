// The whole client: show a conversation, send a message, undo, switch conversations.
// The open conversation's id is the URL's hash (/#trip), so a reload or a link keeps it.
"use strict";

const $ = (id) => document.getElementById(id);

// Ids are plain (letters, digits, "_", "." and "-"), so they need no decoding.
const currentId = () => location.hash.slice(1) || "default";

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

const api = (id, action) => `/api/sessions/${encodeURIComponent(id)}/${action}`;

// textContent, never innerHTML: the text comes from the user or the model.
function render(messages) {
  $("messages").replaceChildren(...messages.map(({ role, text }) => {
    const item = document.createElement("li");
    item.className = role;
    item.textContent = text;
    return item;
  }));
  $("messages").lastElementChild?.scrollIntoView({ block: "end" });
}

async function renderConversations() {
  const { sessions } = await call("GET", "/api/sessions");
  const ids = sessions.includes(currentId()) ? sessions : [currentId(), ...sessions];
  $("conversations").replaceChildren(...ids.map((id) => {
    const link = document.createElement("a");
    link.href = `#${encodeURIComponent(id)}`;
    link.textContent = id;
    if (id === currentId()) link.setAttribute("aria-current", "page");
    const item = document.createElement("li");
    item.append(link);
    return item;
  }));
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function setBusy(busy) {
  document.querySelectorAll("#send button").forEach((button) => { button.disabled = busy; });
}

const showError = (error) => setStatus(`Error: ${error.message}`, true);

// Runs one request with the buttons disabled and renders the messages it returns, unless the
// user has switched to another conversation meanwhile. Returns whether the request succeeded.
async function act(work) {
  const id = currentId();
  setBusy(true);
  try {
    const { messages } = await work(id);
    if (id === currentId()) {
      render(messages);
      setStatus("");
    }
  } catch (error) {
    showError(error);
    return false;
  } finally {
    setBusy(false);
  }
  renderConversations().catch(showError);
  return true;
}

function show() {
  $("title").textContent = currentId();
  return act((id) => call("GET", api(id, "messages")));
}

$("send").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  $("text").value = "";
  $("text").focus();
  setStatus("Thinking…");
  if (!(await act((id) => call("POST", api(id, "messages"), { text })))) {
    $("text").value ||= text;  // give it back, to send again
  }
});

$("undo").addEventListener("click", () => act((id) => call("POST", api(id, "undo"))));

$("open").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = encodeURIComponent($("session-id").value);
  $("session-id").value = "";
});

window.addEventListener("hashchange", show);
show();
