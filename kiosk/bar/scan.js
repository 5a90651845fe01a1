// The scanning page ("Numériser un document"), part of the session bar: it asks the bar's bridge to scan, shows
// each page, and saves the document as a PDF in the session's Downloads, where the service's form can pick it up.
// It talks only to the extension's service worker (and so to the bridge); the body's data-* are for the tests.
"use strict";

(() => {
  const pages = (n) => `${n} page${n > 1 ? "s" : ""}`;
  const TEXT = {
    fr: {
      title: "Numériser un document",
      place:
        "Posez la feuille sur la vitre du scanner, face écrite vers le bas, et refermez le capot. " +
        "Puis touchez « Numériser la page ».",
      scan: "Numériser la page",
      add: "Ajouter une page",
      save: "Enregistrer",
      restart: "Recommencer",
      back: "Revenir à ma démarche",
      another: "Numériser un autre document",
      retry: "Réessayer",
      connecting: "Un instant…",
      scanning: "Numérisation en cours… Ne bougez pas la feuille.",
      saving: "Enregistrement…",
      ready: (n) => `${pages(n)} numérisée${n > 1 ? "s" : ""}. Vérifiez que tout se lit bien.`,
      more: "Pour une autre page, posez-la sur la vitre et touchez « Ajouter une page ». Sinon, touchez « Enregistrer ».",
      saved: (file, n) => `Votre document est enregistré (${pages(n)}) : « ${file} ».`,
      savedHow:
        "Pour l'envoyer, revenez à votre démarche et touchez « Choisir un fichier » (ou « Parcourir ») : " +
        "le document est dans le dossier qui s'ouvre (« Downloads »). Il sera effacé à la fin de la session.",
      page: (n) => `Page ${n}`,
      error: {
        none: "Pas de scanner dans ce bus.",
        unreachable: "Le scanner ne répond pas. Vérifiez qu'il est allumé, ou demandez au médiateur.",
        busy: "Le scanner est occupé. Réessayez dans un instant.",
        no_paper: "Il n'y a pas de feuille dans le chargeur du scanner.",
        cover_open: "Le capot du scanner est ouvert. Refermez-le, puis réessayez.",
        jammed: "Une feuille est coincée dans le scanner. Demandez au médiateur.",
        too_many: "Ce document a déjà 30 pages : enregistrez-le, puis commencez-en un autre.",
        save_failed: "Le document n'a pas pu être enregistré. Demandez au médiateur.",
        failed: "La numérisation n'a pas marché. Réessayez, ou demandez au médiateur.",
      },
    },
    en: {
      title: "Scan a document",
      place: "Put the sheet on the scanner glass, written side down, and close the lid. Then touch “Scan the page”.",
      scan: "Scan the page",
      add: "Add a page",
      save: "Save",
      restart: "Start again",
      back: "Back to my service",
      another: "Scan another document",
      retry: "Try again",
      connecting: "One moment…",
      scanning: "Scanning… Do not move the sheet.",
      saving: "Saving…",
      ready: (n) => `${pages(n)} scanned. Check that everything is readable.`,
      more: "For another page, put it on the glass and touch “Add a page”. Otherwise, touch “Save”.",
      saved: (file, n) => `Your document is saved (${pages(n)}): “${file}”.`,
      savedHow:
        "To send it, go back to your service and touch “Choose file” (or “Browse”): the document is in the " +
        "folder that opens (“Downloads”). It will be erased at the end of the session.",
      page: (n) => `Page ${n}`,
      error: {
        none: "No scanner on this bus.",
        unreachable: "The scanner does not answer. Check that it is on, or ask the mediator.",
        busy: "The scanner is busy. Try again in a moment.",
        no_paper: "There is no sheet in the scanner's feeder.",
        cover_open: "The scanner lid is open. Close it, then try again.",
        jammed: "A sheet is jammed in the scanner. Ask the mediator.",
        too_many: "This document already has 30 pages: save it, then start another one.",
        save_failed: "The document could not be saved. Ask the mediator.",
        failed: "Scanning did not work. Try again, or ask the mediator.",
      },
    },
  };
  const $ = (id) => document.getElementById(id);
  const port = chrome.runtime.connect({ name: "scan" });
  let lang = "fr";
  let scan = { state: "connecting", pages: 0, reason: null, file: null };
  let images = []; // object URLs of the pages' JPEG, by page
  const parts = {}; // page -> base64 parts received so far
  const asked = new Set();

  function t() {
    return TEXT[lang] || TEXT.fr;
  }

  function ask(action, extra) {
    port.postMessage({ cmd: "scan", action, ...extra });
  }

  function fetchImages() {
    if (scan.pages < images.length) {
      // Started again: the pages the bridge holds are new ones.
      images.forEach((url) => url && URL.revokeObjectURL(url));
      images = [];
      asked.clear();
    }
    for (let i = 0; i < scan.pages; i++) {
      if (!images[i] && !asked.has(i)) {
        asked.add(i);
        ask("image", { page: i });
      }
    }
  }

  function receiveImage(message) {
    const got = (parts[message.page] = parts[message.page] || []);
    got[message.part] = message.data;
    if (got.filter((p) => p !== undefined).length < message.parts) {
      return;
    }
    delete parts[message.page];
    const binary = atob(got.join(""));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    images[message.page] = URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" }));
    render();
  }

  function show(id, label, visible) {
    const button = $(id);
    button.textContent = label;
    button.hidden = !visible;
    button.disabled = scan.state === "scanning" || scan.state === "saving";
  }

  function render() {
    const text = t();
    const { state, reason } = scan;
    const n = scan.pages;
    document.documentElement.lang = lang;
    document.title = text.title;
    $("title").textContent = text.title;
    document.body.dataset.state = state;
    document.body.dataset.pages = String(n);
    document.body.dataset.images = String(images.filter(Boolean).length);
    document.body.dataset.file = scan.file || "";
    document.body.dataset.reason = reason || "";
    let say = "";
    let how = "";
    if (state === "connecting") {
      say = text.connecting;
    } else if (state === "scanning") {
      say = text.scanning;
    } else if (state === "saving") {
      say = text.saving;
    } else if (state === "saved") {
      say = text.saved(scan.file, n);
      how = text.savedHow;
    } else if (reason) {
      say = text.error[reason] || text.error.failed;
    } else if (n) {
      say = text.ready(n);
      how = text.more;
    } else {
      how = text.place;
    }
    $("say").textContent = say;
    $("say").className = reason && state !== "saved" ? "problem" : "";
    $("how").textContent = how;
    const usable = reason !== "none";
    const scanned = n > 0 && state !== "saved";
    show("scan", n === 0 && reason && usable ? text.retry : text.scan, usable && n === 0 && state !== "saved");
    show("add", state === "saved" ? text.another : text.add, usable && (scanned || state === "saved"));
    show("save", text.save, scanned);
    show("restart", text.restart, scanned);
    show("back", text.back, true);
    const list = $("pages");
    list.textContent = "";
    if (state !== "saved") {
      images.forEach((url, i) => {
        if (!url) {
          return;
        }
        const figure = document.createElement("figure");
        figure.className = i === n - 1 ? "" : "small"; // the last page large, the others as thumbnails
        const img = document.createElement("img");
        img.src = url;
        img.alt = text.page(i + 1);
        const caption = document.createElement("figcaption");
        caption.textContent = text.page(i + 1);
        figure.append(img, caption);
        list.append(figure);
      });
    }
  }

  $("scan").addEventListener("click", () => ask("page"));
  $("add").addEventListener("click", () => ask("page"));
  $("save").addEventListener("click", () => ask("save"));
  $("restart").addEventListener("click", () => ask("restart"));
  $("back").addEventListener("click", () => {
    chrome.tabs.getCurrent((tab) => chrome.tabs.remove(tab.id));
  });
  port.onMessage.addListener((message) => {
    if (message.type === "status") {
      lang = message.lang || "fr";
      render();
    } else if (message.type === "scan") {
      scan = message;
      fetchImages();
      render();
    } else if (message.type === "scan-image") {
      receiveImage(message);
    }
  });
  render();
  ask("state");
})();
