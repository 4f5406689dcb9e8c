// DOM helpers shared by the web client and the admin console.

export const $ = (selector) => document.querySelector(selector);

// A handler for a form submit or button click that stays on the page.
export function on(selector, type, handler) {
  $(selector).addEventListener(type, (event) => {
    event.preventDefault();
    handler(event.currentTarget, event);
  });
}
