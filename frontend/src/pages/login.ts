import { api, ApiError } from "../api";
import { h, replaceChildren } from "../dom";

export function mountLogin(root: HTMLElement, onSignedIn: () => void): void {
  const error = h("p", { class: "error", role: "alert", id: "login-error" });
  const username = h("input", { id: "username", name: "username", attrs: { autocomplete: "username", required: "" } });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    attrs: { autocomplete: "current-password", required: "" },
  });
  const form = h(
    "form",
    {
      class: "login",
      on: {
        submit: async (event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            await api("auth/login", { method: "POST", body: { username: username.value, password: password.value } });
            onSignedIn();
          } catch (failure) {
            error.textContent = failure instanceof ApiError ? failure.detail : "Sign-in failed.";
          }
        },
      },
    },
    h("h1", {}, "Sign in to Loupe"),
    h("label", { for: "username" }, "Username"),
    username,
    h("label", { for: "password" }, "Password"),
    password,
    h("button", { type: "submit" }, "Sign in"),
    error,
  );
  replaceChildren(root, h("main", { id: "main", class: "login-page" }, form));
  username.focus();
}
