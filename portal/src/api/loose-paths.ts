/* eslint-disable @typescript-eslint/no-explicit-any -- a stand-in for the generated schema, removed once it lands */
type LooseOperation = {
  parameters: { query?: Record<string, unknown>; header?: Record<string, string>; path?: Record<string, string>; cookie?: never };
  requestBody?: { content: { 'application/json': any } };
  responses: { 200: { content: { 'application/json': any } }; 201: { content: { 'application/json': any } }; 204: { content: never } };
};

export type paths = Record<string, { get: LooseOperation; post: LooseOperation; put: LooseOperation; patch: LooseOperation; delete: LooseOperation }>;
