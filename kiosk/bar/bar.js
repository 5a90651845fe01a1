// The session bar, on every page of the public terminal: which service, time left, "Agrandir le texte" (cycles the
// session's zoom), "Terminer et tout effacer", the 5- and 1-minute warnings and "Êtes-vous toujours là ?". It lives
// in a closed shadow root so the site's styles and scripts cannot reach it; the host element carries data-state /
// data-left / data-sent / data-zoom for the end-to-end tests. A page's own script must not keep a session alive or
// hide its end: only real input (isTrusted) counts as activity, and a bar the page removes or hides comes straight
// back.
"use strict";

(() => {
  if (window.top !== window || document.getElementById("allervers-bar")) {
    return;
  }
  const TEXT = {
    fr: {
      left: (m) => (m <= 1 ? "Moins d'une minute" : `Temps restant : ${m} min`),
      end: "Terminer et tout effacer",
      zoom: "Agrandir le texte",
      zoomReset: "Texte normal",
      confirm: "Terminer et effacer tout ce que vous avez fait sur cet ordinateur ?",
      yes: "Oui, tout effacer",
      no: "Non, continuer",
      warn5: "Il reste 5 minutes. Pensez à imprimer ou enregistrer vos documents.",
      warn1: "Il reste 1 minute. Tout sera effacé ensuite.",
      idle: "Êtes-vous toujours là ?",
      idleLeft: (s) => `Sans réponse, tout sera effacé dans ${s} secondes.`,
      stay: "Oui, je continue",
      ending: "Effacement en cours…",
      scan: { ready: "Numériser un document", none: "Pas de scanner dans ce bus", unreachable: "Le scanner ne répond pas" },
      printing: (n) => (n ? `Impression en cours… ${n} page${n > 1 ? "s" : ""}` : "Impression en cours…"),
      printed: (n) => (n ? `Imprimé : ${n} page${n > 1 ? "s" : ""}` : "Imprimé"),
      failed: "L'impression n'a pas abouti. Demandez au médiateur.",
      problem: {
        paper: "L'imprimante n'a plus de papier. Demandez au médiateur.",
        jam: "Du papier est coincé dans l'imprimante. Demandez au médiateur.",
        ink: "L'imprimante n'a plus d'encre. Demandez au médiateur.",
        cover: "Un capot de l'imprimante est ouvert. Demandez au médiateur.",
        offline: "L'imprimante est éteinte ou débranchée. Demandez au médiateur.",
        stopped: "L'imprimante est arrêtée. Demandez au médiateur.",
      },
    },
    en: {
      left: (m) => (m <= 1 ? "Less than a minute" : `Time left: ${m} min`),
      end: "Finish and erase everything",
      zoom: "Larger text",
      zoomReset: "Normal text",
      confirm: "Finish and erase everything you did on this computer?",
      yes: "Yes, erase everything",
      no: "No, carry on",
      warn5: "5 minutes left. Remember to print or save your documents.",
      warn1: "1 minute left. Everything will then be erased.",
      idle: "Are you still there?",
      idleLeft: (s) => `Without an answer, everything will be erased in ${s} seconds.`,
      stay: "Yes, I am here",
      ending: "Erasing…",
      scan: { ready: "Scan a document", none: "No scanner on this bus", unreachable: "The scanner does not answer" },
      printing: (n) => (n ? `Printing… ${n} page${n > 1 ? "s" : ""}` : "Printing…"),
      printed: (n) => (n ? `Printed: ${n} page${n > 1 ? "s" : ""}` : "Printed"),
      failed: "Printing did not work. Ask the mediator.",
      problem: {
        paper: "The printer is out of paper. Ask the mediator.",
        jam: "Paper is jammed in the printer. Ask the mediator.",
        ink: "The printer is out of ink. Ask the mediator.",
        cover: "A cover of the printer is open. Ask the mediator.",
        offline: "The printer is off or unplugged. Ask the mediator.",
        stopped: "The printer is stopped. Ask the mediator.",
      },
    },
  };
  const CSS = `
    :host { all: initial; }
    .bar { position: fixed; left: 0; right: 0; bottom: 0; z-index: 2147483647; display: flex; gap: 16px;
      align-items: center; padding: 10px 16px; background: #000; color: #fff; border-top: 4px solid #ffd400;
      font: bold 22px/1.3 system-ui, sans-serif; }
    .bar.warn5 { border-top-color: #ff9f00; } .bar.warn1 { background: #8b0000; border-top-color: #fff; }
    .service { flex: 0 1 auto; } .left { flex: 1 1 auto; } .msg { flex: 2 1 auto; font-weight: normal; }
    button { font: bold 22px system-ui, sans-serif; padding: 12px 20px; min-height: 56px; border-radius: 8px;
      border: 3px solid #fff; background: #ffd400; color: #000; cursor: pointer; }
    button.secondary { background: #fff; }
    button:disabled { background: #555; color: #fff; border-color: #999; cursor: default; }
    .print { flex: 2 1 auto; } .print.problem, .print.failed { color: #ffd400; }
    button:focus-visible { outline: 4px solid #00a2ff; outline-offset: 2px; }
    .overlay { position: fixed; inset: 0; z-index: 2147483647; background: rgba(0,0,0,.85); display: flex;
      align-items: center; justify-content: center; }
    .box { background: #fff; color: #000; padding: 32px; max-width: 720px; border-radius: 12px;
      font: 26px/1.4 system-ui, sans-serif; display: flex; flex-direction: column; gap: 20px; }
    .box strong { font-size: 32px; } [hidden] { display: none !important; }`;

  const host = document.createElement("div");
  host.id = "allervers-bar";
  const root = host.attachShadow({ mode: "closed" });
  root.innerHTML = `<style>${CSS}</style>
    <div class="bar" role="region" aria-label="Session">
      <span class="service"></span><span class="left" aria-live="polite"></span><span class="msg"></span>
      <span class="print" aria-live="polite"></span><button class="scan secondary"></button>
      <button class="zoom secondary"></button><button class="end"></button>
    </div>
    <div class="overlay confirm" hidden role="dialog" aria-modal="true"><div class="box">
      <strong class="confirm-text"></strong><button class="yes"></button><button class="no secondary"></button>
    </div></div>
    <div class="overlay idle" hidden role="alertdialog" aria-modal="true"><div class="box">
      <strong class="idle-text"></strong><span class="idle-left"></span><button class="stay"></button>
    </div></div>`;
  const $ = (selector) => root.querySelector(selector);
  const port = chrome.runtime.connect({ name: "bar" });
  let status = { active: false };
  let lastActivity = 0;
  let sent = 0; // activity messages sent (data-sent: the hostile-page test reads it)

  function text() {
    return TEXT[status.lang] || TEXT.fr;
  }

  function render() {
    const t = text();
    const left = Math.ceil((status.time_left_s || 0) / 60);
    const state = status.ending ? "ending" : status.idle_prompt ? "idle" : status.warning ? `warn${status.warning[0]}` : "session";
    host.dataset.state = status.active ? state : "inactive";
    host.dataset.left = String(status.time_left_s ?? "");
    host.dataset.sent = String(sent);
    host.dataset.zoom = String(status.zoom ?? "");
    show();
    $(".bar").className = `bar ${state}`;
    // Pages grow with the session's zoom; the bar keeps its size so it never covers half of a zoomed page.
    $(".bar").style.zoom = String(100 / (status.zoom || 100));
    $(".service").textContent = (status.lang === "en" && status.label_en) || status.label || "";
    $(".left").textContent = status.ending ? t.ending : t.left(left);
    $(".msg").textContent = state === "warn5" ? t.warn5 : state === "warn1" ? t.warn1 : "";
    $(".end").textContent = t.end;
    renderDevices(t);
    // At the largest step the next touch brings the text back to normal: say so.
    $(".zoom").textContent = status.zoom >= 200 ? t.zoomReset : t.zoom;
    $(".confirm-text").textContent = t.confirm;
    $(".yes").textContent = t.yes;
    $(".no").textContent = t.no;
    $(".idle-text").textContent = t.idle;
    $(".idle-left").textContent = t.idleLeft(status.idle_left_s ?? 60);
    $(".stay").textContent = t.stay;
    $(".idle").hidden = !(status.active && status.idle_prompt);
  }

  // Printing feedback (from CUPS through the controller) and the scanner's button.
  function renderDevices(t) {
    const printing = status.printing;
    const print = $(".print");
    print.textContent = !printing
      ? ""
      : printing.state === "problem"
        ? t.problem[printing.problem] || t.failed
        : printing.state === "failed"
          ? t.failed
          : t[printing.state](printing.pages);
    print.className = `print ${printing ? printing.state : ""}`;
    host.dataset.print = printing ? `${printing.state}:${printing.pages}:${printing.problem || ""}` : "";
    const scanner = status.scanner || "none";
    host.dataset.scanner = scanner;
    const scan = $(".scan");
    scan.textContent = t.scan[scanner] || t.scan.ready;
    scan.disabled = scanner === "none";
    scan.hidden = location.protocol === "chrome-extension:"; // on the scan page itself
  }

  // Inline and !important: beats any style sheet of the page; the observer below undoes any inline change.
  function show() {
    const display = status.active ? "block" : "none";
    const wanted = `display: ${display} !important; visibility: visible !important; opacity: 1 !important;`;
    if (host.getAttribute("style") !== wanted) {
      host.setAttribute("style", wanted);
    }
    if (host.hidden) {
      host.hidden = false;
    }
  }

  function activity(event) {
    const now = Date.now();
    if (event.isTrusted && status.active && now - lastActivity > 10000) {
      lastActivity = now;
      sent += 1;
      host.dataset.sent = String(sent);
      port.postMessage({ cmd: "activity" });
    }
  }

  $(".end").addEventListener("click", () => {
    $(".confirm").hidden = false;
    $(".no").focus();
  });
  $(".scan").addEventListener("click", () => port.postMessage({ cmd: "open-scan" }));
  $(".zoom").addEventListener("click", () => {
    port.postMessage({ cmd: "zoom" });
  });
  $(".no").addEventListener("click", () => {
    $(".confirm").hidden = true;
  });
  $(".yes").addEventListener("click", () => {
    $(".confirm").hidden = true;
    port.postMessage({ cmd: "end" });
  });
  $(".stay").addEventListener("click", () => {
    lastActivity = Date.now();
    port.postMessage({ cmd: "activity" });
  });
  for (const type of ["keydown", "pointerdown", "wheel", "touchstart"]) {
    window.addEventListener(type, activity, { capture: true, passive: true });
  }
  port.onMessage.addListener((message) => {
    if (message.type === "status") {
      status = message;
      render();
    }
  });
  render();
  (document.documentElement || document).appendChild(host);
  // Removed (or the whole document rewritten): put back; restyled or hidden: restored.
  new MutationObserver(() => {
    if (!host.isConnected) {
      (document.documentElement || document).appendChild(host);
    }
  }).observe(document, { childList: true, subtree: true });
  new MutationObserver(show).observe(host, { attributes: true, attributeFilter: ["style", "hidden", "class"] });
})();
