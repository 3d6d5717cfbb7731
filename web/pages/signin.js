// The sign-in page: a token, checked with GET /v1/whoami and kept for this tab.

import { ApiError, setToken, whoami } from "../api.js";
import { h, replace } from "../dom.js";

export function signinPage({ main, onSignedIn }) {
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, placeholder: "token" });
  const message = h("p", { class: "error-text", id: "signin-error" });
  const form = h(
    "form",
    {
      class: "card signin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        setToken(input.value.trim());
        try {
          await whoami();
        } catch (e) {
          setToken(null);
          replace(message, e instanceof ApiError && e.status === 401 ? "That token is not accepted (unknown or revoked)." : e.message);
          return;
        }
        onSignedIn();
      },
    },
    h("h2", { text: "Sign in" }),
    h("p", {}, "This server requires a token. Paste one made with ", h("code", { text: "rota token create --name NAME --role viewer|operator|admin" }), ". It is kept in this tab only."),
    h("label", { for: "token", text: "Token" }),
    input,
    h("button", { type: "submit", id: "signin", class: "primary" }, "Sign in"),
    message,
  );
  main.append(form);
  input.focus();
  return {};
}
