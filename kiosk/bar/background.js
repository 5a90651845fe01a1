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
      connectBridge();
    }
    bridge.postMessage(message);
  });
  page.onDisconnect.addListener(() => pages.delete(page));
});

connectBridge();
