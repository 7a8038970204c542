"""The chat-or-image router: a multinomial naive Bayes text classifier (pure Python) that
says whether an instruction asks for an image, trained on the project's own corpus."""
