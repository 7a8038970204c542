import { LlmgaClient } from "./api.js"; export const client = new LlmgaClient();
