// The API's interactive documentation: Swagger UI from this server (no CDN), started by this file (no inline
// script: the Content-Security-Policy allows none).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
