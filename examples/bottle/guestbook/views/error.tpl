% rebase("layout")
<h1>Not found</h1><p id="message">{{message}}</p>
