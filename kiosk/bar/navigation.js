// What the session bar's service worker does as pages load (imported by background.js): our own page when a page
// cannot open (failed.html), and the session's zoom on every page.
"use strict";

// --- A way out of every page ------------------------------------------------------------------------------------
// Chromium's own error page (chrome-error://chromewebdata/) runs no content script, so no bar: the visitor would be
// stuck until the idle timeout. Any failed main-frame navigation (link down, an address the policy blocks) is
// replaced by failed.html, a page of this extension (allowlisted by its id in the policy, not web-accessible: a site
// that tries to open it fails, and gets it from here, built from that failure), which carries the bar,
// "Réessayer" and "Terminer et tout effacer", and needs no network.
const FAILED_PAGE = chrome.runtime.getURL("failed.html");
// The visitor went elsewhere before the page came, or the response was a download: nothing failed.
const NOT_FAILURES = new Set(["net::ERR_ABORTED"]);

function showFailedPage(tabId, url, error) {
  if (url.startsWith(FAILED_PAGE)) {
    return; // our own page failing (it never should): never loop
  }
  const page = new URL(FAILED_PAGE);
  page.searchParams.set("url", url);
  page.searchParams.set("error", error);
  chrome.tabs.update(tabId, { url: page.href }).catch(() => {});
}

chrome.webNavigation.onErrorOccurred.addListener((details) => {
  if (details.frameId === 0 && !NOT_FAILURES.has(details.error)) {
    showFailedPage(details.tabId, details.url, details.error);
  }
});

// A first page that failed before this worker ran (the link was already down when the visitor chose the service).
function catchUpFailedTabs() {
  chrome.tabs.query({}, (tabs) => {
    for (const tab of tabs) {
      chrome.webNavigation.getFrame({ tabId: tab.id, frameId: 0 }).then((frame) => {
        if (frame && frame.errorOccurred && tab.url) {
          showFailedPage(tab.id, tab.url, "net::ERR_FAILED");
        }
      }, () => {});
    }
  });
}

// --- Larger text ------------------------------------------------------------------------------------------------
// Chromium's page zoom (what Ctrl+ does) for the session's zoom: it reflows pages, unlike a pinch. It is kept per
// site, so a page of a site not yet zoomed is set as it loads. The profile, zoom levels included, dies with the
// session.
let sessionZoom = 100;

function zoomTab(tab) {
  if (!tab.url || !/^(https?|chrome-extension):/.test(tab.url)) {
    return;
  }
  const factor = sessionZoom / 100;
  chrome.tabs
    .getZoom(tab.id)
    .then((current) => (Math.abs(current - factor) > 0.001 ? chrome.tabs.setZoom(tab.id, factor) : null))
    .catch(() => {});
}

chrome.tabs.onUpdated.addListener((tabId, change, tab) => {
  if (change.status === "loading" || change.url) {
    zoomTab(tab);
  }
});

// The session's status from the controller (background.js calls it on each): zoom every page when the zoom changes.
function sessionStatusChanged(status) {
  const zoom = status.zoom || 100;
  if (zoom !== sessionZoom) {
    sessionZoom = zoom;
    chrome.tabs.query({}, (tabs) => tabs.forEach(zoomTab));
  }
}

catchUpFailedTabs();
