// Web Workers for pages opened from the file system. Browsers refuse to start a Worker from a
// file: URL, and Material for MkDocs runs its search in one; its offline plugin would fetch a
// stand-in (iframe-worker) from the network, which a page read offline cannot reach. This is
// that stand-in, shipped with the site: on file: pages `Worker` runs the worker's script in a
// hidden same-origin iframe, whose global postMessage and "message" events are bridged to the
// Worker object. Elsewhere the browser's Worker is left as it is.
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }

  class FrameWorker extends EventTarget {
    constructor(url) {
      super();
      this.onmessage = null;
      this.onerror = null;
      this._queue = [];
      this._ready = false;
      this._frame = document.createElement("iframe");
      this._frame.hidden = true;
      (document.body || document.documentElement).appendChild(this._frame);
      const scope = this._frame.contentWindow;
      // the worker's postMessage(data) answers the page, as a worker's would
      scope.postMessage = (data) => setTimeout(() => this._answer(data), 0);
      const script = scope.document.createElement("script");
      script.src = new URL(url, location.href).href;
      script.onload = () => {
        this._ready = true;
        this._queue.splice(0).forEach((data) => this._send(data));
      };
      script.onerror = (event) => {
        const error = new ErrorEvent("error", { message: `cannot load worker script ${script.src}` });
        this.dispatchEvent(error);
        if (this.onerror) {
          this.onerror(error);
        }
      };
      scope.document.head.appendChild(script);
    }

    postMessage(data) {
      if (this._ready) {
        this._send(data);
      } else {
        this._queue.push(data);
      }
    }

    terminate() {
      this._frame.remove();
    }

    _send(data) {
      const scope = this._frame.contentWindow;
      setTimeout(() => scope.dispatchEvent(new scope.MessageEvent("message", { data: data })), 0);
    }

    _answer(data) {
      const event = new MessageEvent("message", { data: data });
      this.dispatchEvent(event);
      if (this.onmessage) {
        this.onmessage(event);
      }
    }
  }

  window.Worker = FrameWorker;
})();
