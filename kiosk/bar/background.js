// The session bar's service worker: one native-messaging port to the controller's bridge, shared by every page.
// navigation.js: our page when a page cannot open, the session's zoom.
"use strict";

importScripts("navigation.js");

const HOST = "fr.allervers.kiosk";
const pages = new Set();
let bridge = null;
let lastStatus = null;

function connectBridge() {
  bridge = chrome.runtime.connectNative(HOST);
  bridge.onMessage.addListener((message) => {
    if (message.type === "status") {
      lastStatus = message;
      sessionStatusChanged(message);
    }
    for (const page of pages) {
      // The scan page's messages (and its images) go to the scan page only; the status goes to every page.
      if (!message.type.startsWith("scan") || page.name === "scan") {
        page.postMessage(message);
      }
    }
  });
  bridge.onDisconnect.addListener(() => {
    bridge = null;
    setTimeout(connectBridge, 1000);
  });
}

chrome.runtime.onConnect.addListener((page) => {
  pages.add(page);
  if (lastStatus) {
    page.postMessage(lastStatus);
  }
  page.onMessage.addListener((message) => {
    if (message.cmd === "open-scan") {
      openScanPage(page.sender && page.sender.tab);
      return;
    }
    if (!bridge) {
      connectBridge();
    }
    bridge.postMessage(message);
  });
  page.onDisconnect.addListener(() => pages.delete(page));
});

// "Numériser un document": the scanning page in a tab of its own, over the service's form, which keeps what the
// visitor typed; closing it brings the form back. One such tab at most.
function openScanPage(fromTab) {
  const url = chrome.runtime.getURL("scan.html");
  chrome.tabs.query({ url }, (open) => {
    if (open.length) {
      chrome.tabs.update(open[0].id, { active: true });
    } else {
      chrome.tabs.create(fromTab ? { url, openerTabId: fromTab.id } : { url });
    }
  });
}

// A page that loaded before the extension did (the first one, opened with the browser) got no content script:
// add the bar to every open tab now; bar.js does nothing on a page that already has it.
function addBarToOpenTabs() {
  chrome.tabs.query({}, (tabs) => {
    for (const tab of tabs) {
      if (tab.url && /^https?:/.test(tab.url)) {
        chrome.scripting.executeScript({ target: { tabId: tab.id }, files: ["bar.js"] }).catch(() => {});
      }
    }
  });
}

connectBridge();
addBarToOpenTabs();
