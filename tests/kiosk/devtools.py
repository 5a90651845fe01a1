"""A page of the session's Chromium seen through the DevTools pipe, for the end-to-end tests: find it, read it, touch
it (a real ``Input.dispatchMouseEvent``: trusted input, as a finger on the touch screen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kiosk.browser import CdpError, CdpPipe
from tests.conftest import wait_until


class Tab:
    """One page (or frame) of the browser, attached."""

    def __init__(self, cdp: CdpPipe, session_id: str, target_id: str = ""):
        self.cdp, self.session_id, self.target_id = cdp, session_id, target_id

    @classmethod
    async def attach(cls, cdp: CdpPipe, target_id: str) -> Tab:
        attached = await cdp.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        return cls(cdp, attached["sessionId"], target_id)

    @classmethod
    async def find(cls, cdp: CdpPipe, url_part: str, timeout: float = 30) -> Tab:
        """The page whose address contains ``url_part`` (waits for it)."""

        async def target() -> str | None:
            infos = (await cdp.send("Target.getTargets"))["targetInfos"]
            return next((t["targetId"] for t in infos if t["type"] == "page" and url_part in t["url"]), None)

        return await cls.attach(cdp, await wait_until(target, timeout, interval=0.1, message=f"a page at {url_part}"))

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.send(method, params or {}, session_id=self.session_id, timeout=20)

    async def eval(self, expression: str) -> Any:
        """The expression's value; None while the page is between two documents (a navigation committing)."""
        try:
            result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        except CdpError as exc:
            if "execution context" in str(exc):
                return None
            raise
        return result["result"].get("value")

    async def wait(self, expression: str, what: str, timeout: float = 30) -> Any:
        return await wait_until(lambda: self.eval(expression), timeout, message=what)

    async def node(self, match: str | Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first node with id or class ``match`` (or for which it is true), closed shadow roots included."""
        tree = (await self.send("DOM.getDocument", {"depth": -1, "pierce": True}))["root"]
        test = match if callable(match) else lambda n: attributes(n).get("id") == match or match in classes(n)
        found = find_node(tree, test)
        assert found is not None, f"no element {match!r} on the page"
        return found

    async def touch(self, target: str | dict[str, Any]) -> None:
        """A finger on the middle of an element (see ``node``), which must be the one under it (not covered)."""
        node = (await self.node(target) if isinstance(target, str) else target)["backendNodeId"]
        await self.send("DOM.scrollIntoViewIfNeeded", {"backendNodeId": node})
        quad = (await self.send("DOM.getBoxModel", {"backendNodeId": node}))["model"]["content"]
        x, y = sum(quad[0::2]) / 4, sum(quad[1::2]) / 4
        hit = await self.send("DOM.getNodeForLocation", {"x": round(x), "y": round(y)})
        what = target if isinstance(target, str) else target.get("localName")
        assert hit["backendNodeId"] == node, f"{what!r} is covered at ({x:.0f}, {y:.0f})"
        for kind in ("mousePressed", "mouseReleased"):
            try:
                await self.send(
                    "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
                )
            except CdpError:
                if not self.cdp.closed:
                    raise  # else the touch ended the session, and the browser with it, before it answered


def attributes(node: dict[str, Any]) -> dict[str, str]:
    values = node.get("attributes", [])
    return dict(zip(values[0::2], values[1::2], strict=True))


def classes(node: dict[str, Any]) -> list[str]:
    return attributes(node).get("class", "").split()


def find_node(node: dict[str, Any], match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """A node of a DOM.getDocument(pierce) tree, shadow roots (closed ones too) included."""
    if match(node):
        return node
    for child in [*node.get("children", []), *node.get("shadowRoots", [])]:
        found = find_node(child, match)
        if found is not None:
            return found
    return None
