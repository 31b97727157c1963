// Login: the API's browser session (cookie + CSRF token).
import * as api from "../api.js";
import { h, signedIn } from "../app.js";

export function render(root) {
  const error = h("p", { class: "error", role: "alert" });
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-pass", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card login", "aria-label": "Log in" },
    h("h1", {}, "vreserve command centre"),
    h("label", { for: "login-user" }, "User name"), user,
    h("label", { for: "login-pass" }, "Password"), pass,
    error,
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await signedIn(await api.login(user.value, pass.value));
    } catch (err) {
      error.textContent = err.message;
    }
  });
  root.replaceChildren(form);
  user.focus();
}
