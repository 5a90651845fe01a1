// The session bar's service worker: one native-messaging port to the controller's bridge, shared by every page.
"use strict";

const HOST = "fr.allervers.kiosk";
const pages = new Set();
let bridge = null;
let lastStatus = null;

function connectBridge() {
  bridge = chrome.runtime.connectNative(HOST);
  bridge.onMessage.addListener((message) => {
    if (message.type === "status") {
      lastStatus = message;
    }
    for (const page of pages) {
      page.postMessage(message);
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
    if (!bridge) {
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
    }
    bridge.postMessage(message);
  });
  page.onDisconnect.addListener(() => pages.delete(page));
});

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
