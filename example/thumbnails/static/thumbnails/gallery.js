// The gallery page: uploads and deletions through fetch(), every change live over a WebSocket.
"use strict";

(() => {
  const gallery = document.getElementById("gallery");
  const empty = document.getElementById("empty");
  const uploadForm = document.getElementById("upload-form");
  const clearForm = document.getElementById("clear-form");
  const errorBox = document.getElementById("upload-error");
  const connection = document.getElementById("connection");
  const clearButton = clearForm.querySelector("button");
  const csrfToken = uploadForm.querySelector("[name=csrfmiddlewaretoken]").value;
  const maxBytes = Number(uploadForm.dataset.maxBytes);
  const cards = new Map();
  // Ids deleted while this page was open: a late progress message must not bring one back.
  const deleted = new Set();

  const STATUS_TEXT = {
    queued: () => "Queued for the worker…",
    processing: (p, progress) =>
      `Making thumbnails: ${p.done}/${p.total}` + (progress ? ` (${progress.detail} done)` : ""),
    ready: (p) => `Ready: ${p.total} sizes`,
    failed: (p) => `Failed: ${p.error}`,
    deleting: () => "Deleting…",
  };

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function element(tag, attributes = {}, text = "") {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  function createCard(picture) {
    const card = element("article", { class: "picture", "data-id": picture.id });
    const header = element("header");
    header.append(element("span", { class: "meta" }), element("span", { class: "status" }));
    const form = element("form", { class: "delete", method: "post", action: picture.delete_url });
    form.append(
      element("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken }),
      element("button", { type: "submit" }, "Delete"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!window.confirm("Delete this picture and its thumbnails?")) return;
      post(form.action, null).catch((error) => showError(error.message));
    });
    card.append(header, element("progress", { value: "0", max: "1" }), element("div", { class: "thumbs" }), form);
    return card;
  }

  function renderThumbnails(container, thumbnails) {
    const wanted = new Set(thumbnails.map((thumbnail) => String(thumbnail.size)));
    for (const figure of [...container.children]) {
      if (!wanted.has(figure.dataset.size)) figure.remove();
    }
    for (const thumbnail of thumbnails) {
      const size = String(thumbnail.size);
      if (container.querySelector(`figure[data-size="${size}"]`)) continue;
      const figure = element("figure", { "data-size": size });
      figure.append(
        element("img", {
          class: "thumb",
          src: thumbnail.url,
          width: String(thumbnail.width),
          height: String(thumbnail.height),
          alt: `${size} px thumbnail`,
        }),
        element("figcaption", {}, `${size} px`),
      );
      container.append(figure);
    }
  }

  function render(picture, progress = null) {
    if (deleted.has(picture.id)) return;
    let card = cards.get(picture.id);
    if (!card) {
      card = createCard(picture);
      cards.set(picture.id, card);
      gallery.prepend(card);
    }
    card.dataset.status = picture.status;
    card.querySelector(".meta").textContent = `${picture.format} ${picture.width}×${picture.height}`;
    card.querySelector(".status").textContent = STATUS_TEXT[picture.status](picture, progress);
    const bar = card.querySelector("progress");
    bar.max = picture.total;
    bar.value = picture.done;
    renderThumbnails(card.querySelector(".thumbs"), picture.thumbnails);
    card.querySelector(".delete button").disabled = picture.status === "deleting";
    showCount();
  }

  // "Delete all" has nothing to delete on an empty gallery.
  function showCount() {
    empty.hidden = cards.size > 0;
    clearButton.disabled = cards.size === 0;
  }

  function remove(id) {
    deleted.add(id);
    const card = cards.get(id);
    if (card) card.remove();
    cards.delete(id);
    showCount();
  }

  function snapshot(pictures) {
    const present = new Set(pictures.map((picture) => picture.id));
    for (const id of [...cards.keys()]) {
      if (!present.has(id)) remove(id);
    }
    // Newest first: prepend the oldest first.
    for (const picture of [...pictures].reverse()) render(picture);
    showCount();
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      body: body ?? new FormData(),
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
      credentials: "same-origin",
    });
    if (response.status === 403) {
      throw new Error("The page's security token expired: reload the page and try again.");
    }
    let data = {};
    try {
      data = await response.json();
    } catch {
      throw new Error(`The server answered ${response.status} ${response.statusText}.`);
    }
    if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
    return data;
  }

  uploadForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = uploadForm.elements.image.files[0];
    if (!file) return showError("Choose an image to upload.");
    if (file.size > maxBytes) {
      return showError(
        `The file is ${(file.size / 1048576).toFixed(1)} MB, over the ${uploadForm.dataset.maxSize} limit: upload a smaller image.`,
      );
    }
    showError("");
    const button = uploadForm.querySelector("button");
    button.disabled = true;
    try {
      const data = await post(uploadForm.action, new FormData(uploadForm));
      render(data.picture);
      uploadForm.reset();
    } catch (error) {
      showError(error.message);
    } finally {
      button.disabled = false;
    }
  });

  clearForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const question =
      cards.size === 1
        ? "Delete the only picture and its thumbnails?"
        : `Delete all ${cards.size} pictures and their thumbnails?`;
    if (!window.confirm(question)) return;
    post(clearForm.action, null).catch((error) => showError(error.message));
  });

  function connect(delay_ms = 1000) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/gallery/`);
    socket.addEventListener("open", () => {
      connection.dataset.state = "live";
      connection.textContent = "Live: updates arrive over the WebSocket";
      delay_ms = 1000;
    });
    socket.addEventListener("message", (event) => {
      const data = JSON.parse(event.data);
      if (data.event === "snapshot") snapshot(data.pictures);
      else if (data.event === "picture") render(data.picture, data.progress || null);
      else if (data.event === "deleted") remove(data.id);
    });
    socket.addEventListener("close", () => {
      connection.dataset.state = "reconnecting";
      connection.textContent = "Reconnecting…";
      setTimeout(() => connect(Math.min(delay_ms * 2, 10000)), delay_ms);
    });
  }

  // The server's rendering of the gallery is for pages without JavaScript; this one is live.
  document.getElementById("reload-note").hidden = true;
  gallery.replaceChildren();
  snapshot(JSON.parse(document.getElementById("initial-pictures").textContent));
  connect();
})();
