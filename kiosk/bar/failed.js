// Our page when a page cannot open (shown by background.js in place of Chromium's error page, where no bar runs):
// what happened in plain words, one big button to try again (or to go back to the service's first page when the
// address is not allowed on this terminal) and one to end the session at once. French until the session says
// otherwise.
"use strict";

(() => {
  const TEXT = {
    fr: {
      network: "La connexion est coupée pour le moment…",
      networkExplain:
        "La page n'a pas pu s'ouvrir. Cela arrive quand le bus est loin d'une antenne. Réessayez dans un instant.",
      blocked: "Cette page n'est pas disponible sur cette borne.",
      blockedExplain: "Seuls les sites du service choisi s'ouvrent ici.",
      other: "Cette page n'a pas pu s'ouvrir.",
      otherExplain: "Le site a peut-être un problème. Vous pouvez réessayer.",
      retry: "Réessayer",
      back: (service) => (service ? `Revenir à ${service}` : "Revenir au début"),
      end: "Terminer et tout effacer",
      note: "« Terminer » efface tout ce que vous avez fait sur cet ordinateur.",
      ending: "Effacement en cours…",
      title: "Page indisponible",
    },
    en: {
      network: "The connection is down for the moment…",
      networkExplain:
        "The page could not open. This happens when the bus is far from an antenna. Try again in a moment.",
      blocked: "This page is not available on this terminal.",
      blockedExplain: "Only the chosen service's sites open here.",
      other: "This page could not open.",
      otherExplain: "The site may have a problem. You can try again.",
      retry: "Try again",
      back: (service) => (service ? `Back to ${service}` : "Back to the start"),
      end: "Finish and erase everything",
      note: "“Finish” erases everything you did on this computer.",
      ending: "Erasing…",
      title: "Page unavailable",
    },
  };
  // Errors of the link or of name lookup: what a satellite link dropping or a dead zone looks like.
  const NETWORK = new RegExp(
    "^net::ERR_(INTERNET_DISCONNECTED|NAME_NOT_RESOLVED|NAME_RESOLUTION_FAILED|CONNECTION_\\w+|TIMED_OUT|" +
      "ADDRESS_UNREACHABLE|NETWORK_\\w+|PROXY_\\w+|TUNNEL_CONNECTION_FAILED|EMPTY_RESPONSE|FAILED)$",
  );
  const params = new URLSearchParams(location.search);
  const failedUrl = params.get("url") || "";
  const error = params.get("error") || "";
  const BLOCKED = /^net::ERR_BLOCKED_BY_(ADMINISTRATOR|CLIENT)$/; // the policy, or an extension page a site tried
  const kind = BLOCKED.test(error) ? "blocked" : NETWORK.test(error) ? "network" : "other";
  // Only web addresses are tried again; anything else (a blocked page) leads back to the service's first page.
  const retryable = kind !== "blocked" && /^https?:\/\//.test(failedUrl);
  const port = chrome.runtime.connect({ name: "failed-page" });
  let status = {};
  let ending = false;

  function render() {
    const t = TEXT[status.lang] || TEXT.fr;
    const label = (status.lang === "en" && status.label_en) || status.label || "";
    document.documentElement.lang = status.lang === "en" ? "en" : "fr";
    document.title = t.title;
    document.body.dataset.kind = kind;
    document.getElementById("title").textContent = t[kind];
    document.getElementById("explain").textContent = t[`${kind}Explain`];
    document.getElementById("retry").textContent = retryable ? t.retry : t.back(label);
    document.getElementById("end").textContent = ending ? t.ending : t.end;
    document.getElementById("note").textContent = t.note;
  }

  document.getElementById("retry").addEventListener("click", () => {
    const target = retryable ? failedUrl : status.url;
    if (target && /^https?:\/\//.test(target)) {
      location.replace(target);
    }
  });
  document.getElementById("end").addEventListener("click", () => {
    // One touch: on this page there is nothing to lose, and the visitor may have no other way to leave.
    ending = true;
    port.postMessage({ cmd: "end" });
    render();
  });
  port.onMessage.addListener((message) => {
    if (message.type === "status") {
      status = message;
      render();
    }
  });
  render();
})();
